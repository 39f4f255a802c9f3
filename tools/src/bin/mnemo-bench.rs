//! `mnemo-bench`: see [`mnemo_tools::bench`].

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(mnemo_tools::bench::main_with(std::env::args_os()))
}
