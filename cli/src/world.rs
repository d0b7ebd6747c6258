//! Which world this `msn pretrain` is a rank of: a process alone, or one of
//! the ranks an MPI launcher started (`mpirun -np N msn pretrain …`, `srun
//! --mpi=pmix msn pretrain …`; feature `mpi`), exchanging through MPI or,
//! between NVIDIA GPUs, NCCL (`--collectives nccl`; feature `cuda`); how
//! its ranks share the machine, check that they run the same thing, and
//! the test-only faults of one rank.

use std::time::Duration;

use anyhow::{bail, Result};
use msn::config::PretrainConfig;
use msn::dist::Group;

/// What carries the exchanges between ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Collectives {
    /// MPI itself (the launcher's library).
    Mpi,
    /// NVIDIA's NCCL between the ranks' GPUs (with --device cuda); MPI makes
    /// the first contact. Without a launcher, a world of one GPU.
    Nccl,
}

/// Joins the launcher's world, or a world of one when no launcher started us.
pub fn join(timeout: Duration, collectives: Collectives, device: ops::Device) -> Result<Group> {
    if collectives == Collectives::Nccl && device != ops::Device::Cuda {
        bail!("--collectives nccl exchanges between NVIDIA GPUs; it needs --device cuda, not {device}");
    }
    let launcher = msn::dist::launched_by_mpi();
    let bootstrap = match &launcher {
        None => None,
        Some(launcher) => Some(mpi_world(launcher)?),
    };
    match collectives {
        Collectives::Mpi => Ok(bootstrap.map_or_else(Group::single, |b| Group::new(b, timeout))),
        Collectives::Nccl => nccl_world(bootstrap, timeout),
    }
}

#[cfg(feature = "mpi")]
fn mpi_world(_launcher: &str) -> Result<std::sync::Arc<dyn msn::dist::Collective>> {
    Ok(std::sync::Arc::new(msn::dist::mpi::MpiWorld::init()?))
}

#[cfg(not(feature = "mpi"))]
fn mpi_world(launcher: &str) -> Result<std::sync::Arc<dyn msn::dist::Collective>> {
    bail!(
        "an MPI launcher started this process ({launcher}) but this msn was built without MPI; build it with `cargo build --release -p msn-cli --features mpi` (needs Open MPI or MPICH: apt-get install openmpi-bin libopenmpi-dev libclang-dev)"
    )
}

#[cfg(feature = "cuda")]
fn nccl_world(
    bootstrap: Option<std::sync::Arc<dyn msn::dist::Collective>>,
    timeout: Duration,
) -> Result<Group> {
    // Each rank sees one GPU (`pick_gpu`), its ordinal 0.
    let world = msn::dist::nccl::NcclWorld::init(0, bootstrap)?;
    Ok(Group::new(std::sync::Arc::new(world), timeout))
}

#[cfg(not(feature = "cuda"))]
fn nccl_world(_: Option<std::sync::Arc<dyn msn::dist::Collective>>, _: Duration) -> Result<Group> {
    bail!("--collectives nccl: this build has no CUDA runtime; rebuild with `cargo build --release -p msn-cli --features cuda,mpi`")
}

/// This rank's share of the machine's cores, when an MPI launcher started
/// several ranks on it: without it, two ranks on two cores would each start
/// two rayon threads and fight over them. `None` (rayon's default: every
/// core, or `RAYON_NUM_THREADS` when set) otherwise.
pub fn threads_per_rank() -> Option<usize> {
    // SLURM's variables are there in a batch script's single process too.
    msn::dist::launched_by_mpi()?;
    let local_ranks = msn::dist::ranks_on_this_machine()?;
    if local_ranks <= 1 || std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some((cores / local_ranks).max(1))
}

/// Gives each rank on a machine its own GPU, before CUDA starts: the
/// local rank's entry of `CUDA_VISIBLE_DEVICES` (or GPU number local rank
/// when it is not set), as `torchrun` does with `LOCAL_RANK`.
pub fn pick_gpu(device: ops::Device) {
    if device != ops::Device::Cuda || msn::dist::launched_by_mpi().is_none() {
        return;
    }
    let local_rank: Option<usize> = [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok());
    let (Some(local_rank), Some(2..)) = (local_rank, msn::dist::ranks_on_this_machine()) else {
        return;
    };
    let chosen = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(list) if !list.trim().is_empty() => {
            let gpus: Vec<&str> = list.split(',').map(str::trim).collect();
            gpus[local_rank % gpus.len()].to_string()
        }
        _ => local_rank.to_string(),
    };
    // SAFETY: `msn pretrain` calls this first, while the process has one
    // thread (rayon's pool and the signal thread start after).
    unsafe { std::env::set_var("CUDA_VISIBLE_DEVICES", chosen) };
}

/// Refuses to start ranks that were not given the same run: every rank
/// compares its configuration and image count with rank 0's, and the ranks
/// that differ name the first line that does.
pub fn check_same_run(config: &PretrainConfig, images: usize, group: &Group) -> Result<()> {
    if group.size() == 1 {
        return Ok(());
    }
    let text = format!("{}images = {images}\n", config.to_toml());
    let prints = group.all_gather_u64(
        &[msn::dist::fingerprint(&text)],
        "the ranks' configurations",
    );
    if prints.iter().all(|&p| p == prints[0]) {
        return Ok(());
    }
    let at_root = group.broadcast_string(&text, "rank 0's configuration");
    let differing: Vec<usize> = (0..group.size())
        .filter(|&r| prints[r] != prints[0])
        .collect();
    if differing.contains(&group.rank()) {
        let (here, there) = text
            .lines()
            .zip(at_root.lines())
            .find(|(a, b)| a != b)
            .unwrap_or(("(more lines)", "(fewer lines)"));
        bail!("rank {} was started with another run than rank 0: `{here}` here, `{there}` on rank 0; start every rank with the same flags, configuration and data", group.rank());
    }
    bail!("rank(s) {differing:?} were started with another run than rank 0 (their errors name the difference); start every rank with the same flags, configuration and data")
}

/// Test-only faults of one rank of a data-parallel run:
/// `MSN_TEST_RANK_FAULT=RANK:STEP:die` kills rank RANK after step STEP
/// (SIGKILL, as the kernel's out-of-memory killer would), `…:hang` leaves it
/// alive but silent.
pub fn rank_fault_for_tests(group: &Group, step: u64) {
    let Ok(spec) = std::env::var("MSN_TEST_RANK_FAULT") else {
        return;
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let [rank, at, fault] = parts[..] else {
        return;
    };
    if rank.parse() != Ok(group.rank()) || at.parse() != Ok(step) {
        return;
    }
    match fault {
        // SAFETY: raising a signal at the calling thread has no preconditions.
        "die" => unsafe {
            libc::raise(libc::SIGKILL);
        },
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        _ => {}
    }
}

/// Test-only: `MSN_TEST_STOP_AFTER_STEP=STEP` asks rank 0 alone to stop
/// after STEP as SIGTERM would, deterministically.
pub fn stop_for_tests(group: &Group, step: u64) -> Option<(&'static str, u8)> {
    let at: u64 = std::env::var("MSN_TEST_STOP_AFTER_STEP")
        .ok()?
        .parse()
        .ok()?;
    (group.is_root() && step == at).then_some(("SIGTERM", 143))
}
