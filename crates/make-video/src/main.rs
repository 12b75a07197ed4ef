//! make-video: the reference service as a binary (`make-video --help` says the rest).

use std::io::IsTerminal;

use make_video::cli::Cli;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(message) = cli.run().await {
        eprintln!("make-video: {message}");
        std::process::exit(1);
    }
}
