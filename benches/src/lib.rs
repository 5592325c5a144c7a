//! Benchmarks of cranebox.
