//! `mnemoutl`: see [`mnemo_tools::mnemoutl`].

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(mnemo_tools::mnemoutl::main_with(std::env::args_os()))
}
