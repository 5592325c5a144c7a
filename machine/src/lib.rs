//! The PC: wires memory, devices and a CPU backend together and runs them.
