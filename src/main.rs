//! The `cipherd` binary: everything lives in the library's `cli` module.

// jemalloc: under load glibc malloc's arena locks showed up as 30% of samples
// in batch requests spread over threads (BENCHMARKS.md, REST load section).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    cipherd::cli::main()
}
