//! The `cipherd` binary: everything lives in the library's `cli` module.

fn main() -> anyhow::Result<()> {
    cipherd::cli::main()
}
