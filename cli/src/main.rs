//! The `msn` command line.

mod allocator;
mod bench;
mod bench_data;
mod device;
mod embed;
mod eval;
mod gradcheck;
mod plot;
mod pretrain;
mod run_folder;
mod stop;
mod threads;
mod viz;
mod world;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "msn",
    version,
    about = "Masked Siamese Networks on a from-scratch deep-learning stack"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every op's backward against finite differences (f64, random shapes).
    Gradcheck(gradcheck::Args),
    /// Pretrain a ViT with MSN (default: fmnist-tiny on the embedded Fashion-MNIST).
    Pretrain(Box<pretrain::Args>),
    /// Evaluate an encoder with few labels: few-shot, linear probe, k-NN.
    Eval(Box<eval::Args>),
    /// Write the features of every image of a data set, with labels, as safetensors.
    Embed(Box<embed::Args>),
    /// Time the training step (images/s) of a preset on random views, on any device.
    Bench(Box<bench::Args>),
    /// Draw the views with dropped patches, the CLS attention, and prototype usage.
    Viz(Box<viz::Args>),
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    stop::quiet_broken_pipes();
    let cli = Cli::parse();
    if let Command::Pretrain(args) = &cli.command {
        // Before any thread starts: the GPU choice is an environment variable.
        world::pick_gpu(args.device());
    }
    let result = threads::pool().and_then(|pool| pool.install(|| run(cli.command)));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The command itself, on a thread of the compute pool.
fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Gradcheck(args) => gradcheck::run(args),
        Command::Pretrain(args) => pretrain::run(*args),
        Command::Eval(args) => eval::run(*args).map(|()| ExitCode::SUCCESS),
        Command::Embed(args) => embed::run(*args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(*args).map(|()| ExitCode::SUCCESS),
        Command::Viz(args) => viz::run(*args).map(|()| ExitCode::SUCCESS),
    }
}
