//! The `mpshm` command (see the `mpshm_cli` library, where it lives).

fn main() -> std::process::ExitCode {
    mpshm_cli::main()
}
