fn main() {
    eprintln!("mnemo: server not built yet");
    std::process::exit(1);
}
