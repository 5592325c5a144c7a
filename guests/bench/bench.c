/*
 * A bare-metal benchmark kernel for cranebox and QEMU (multiboot v1, 32-bit).
 *
 * Four integer workloads (a sieve, a sort, CRC32, a hash loop), repeated `scale` times
 * (from "scale=N" on the multiboot command line), print a checksum in hex on the debug
 * console (port 0xE9) and exit through isa-debug-exit (port 0xF4). The checksum depends only
 * on the scale, so two emulators that print different checksums disagree about x86.
 */
typedef unsigned int u32;
typedef unsigned char u8;

#define MB_MAGIC 0x1BADB002u
#define MB_FLAGS 0x00000002u /* memory info */

__attribute__((section(".multiboot"), used, aligned(4)))
static const u32 multiboot_header[3] = {MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)};

static u8 stack[16384] __attribute__((aligned(16)));
void kmain(u32 magic, const u32 *mbi);

__attribute__((section(".text.start"), naked, used)) void _start(void) {
    __asm__ volatile("mov %0, %%esp\n\t"
                     "push %%ebx\n\t"
                     "push %%eax\n\t"
                     "call kmain\n\t"
                     "1: hlt\n\t"
                     "jmp 1b" ::"i"(stack + sizeof(stack)));
}

static inline void outb(unsigned short port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }

static void puts(const char *s) {
    while (*s) outb(0xe9, (u8)*s++);
}

static void puthex(u32 v) {
    char buf[9];
    for (int i = 7; i >= 0; i--) {
        buf[i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    }
    buf[8] = 0;
    puts(buf);
}

#define SIEVE_N 65536
static u8 composite[SIEVE_N];

static u32 sieve(void) {
    u32 count = 0;
    for (u32 i = 0; i < SIEVE_N; i++) composite[i] = 0;
    for (u32 i = 2; i < SIEVE_N; i++) {
        if (composite[i]) continue;
        count += i;
        for (u32 j = i * 2; j < SIEVE_N; j += i) composite[j] = 1;
    }
    return count;
}

#define SORT_N 8192
static u32 arr[SORT_N];
static u32 rng_state;

static u32 rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void quicksort(u32 *a, int lo, int hi) {
    while (lo < hi) {
        u32 p = a[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) {
                u32 t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (j - lo < hi - i) {
            quicksort(a, lo, j);
            lo = i;
        } else {
            quicksort(a, i, hi);
            hi = j;
        }
    }
}

static u32 sort(u32 seed) {
    rng_state = seed | 1;
    for (int i = 0; i < SORT_N; i++) arr[i] = rng();
    quicksort(arr, 0, SORT_N - 1);
    u32 h = 0;
    for (int i = 0; i < SORT_N; i += 97) h = h * 31 + arr[i];
    return h;
}

static u32 crc_table[256];

static u32 crc32(const u8 *p, u32 n) {
    if (!crc_table[1]) {
        for (u32 i = 0; i < 256; i++) {
            u32 c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            crc_table[i] = c;
        }
    }
    u32 c = 0xffffffffu;
    for (u32 i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

static u32 hash_loop(u32 seed) {
    u32 h = 2166136261u ^ seed;
    for (u32 i = 0; i < 200000; i++) {
        h ^= i & 0xff;
        h *= 16777619u;
        h = (h << 7) | (h >> 25);
    }
    return h;
}

static u32 parse_scale(const u32 *mbi) {
    if (!mbi || !(mbi[0] & (1u << 2))) return 20;
    const char *s = (const char *)mbi[4];
    for (; *s; s++) {
        if (s[0] == 's' && s[1] == 'c' && s[2] == 'a' && s[3] == 'l' && s[4] == 'e' && s[5] == '=') {
            u32 v = 0;
            for (s += 6; *s >= '0' && *s <= '9'; s++) v = v * 10 + (u32)(*s - '0');
            return v ? v : 1;
        }
    }
    return 20;
}

void kmain(u32 magic, const u32 *mbi) {
    if (magic != 0x2BADB002u) {
        puts("bench: not started by a multiboot loader\n");
        outb(0xf4, 1);
    }
    u32 scale = parse_scale(mbi);
    u32 sum = 0;
    for (u32 r = 0; r < scale; r++) {
        sum = sum * 33 + sieve();
        sum = sum * 33 + sort(sum + r);
        sum = sum * 33 + crc32((const u8 *)arr, sizeof(arr));
        sum = sum * 33 + hash_loop(sum);
    }
    puts("bench checksum ");
    puthex(sum);
    puts("\n");
    outb(0xf4, 0);
}
