fn main() -> std::process::ExitCode {
    tines_audit::cli::main()
}
