//! Which world this `msn pretrain` is a rank of: a process alone, or one of
//! the ranks an MPI launcher started (`mpirun -np N msn pretrain …`, `srun
//! --mpi=pmix msn pretrain …`; feature `mpi`).

use std::time::Duration;

use anyhow::Result;
use msn::dist::Group;

/// Joins the launcher's world, or a world of one when no launcher started us.
pub fn join(timeout: Duration) -> Result<Group> {
    let Some(launcher) = msn::dist::launched_by_mpi() else {
        return Ok(Group::single());
    };
    #[cfg(feature = "mpi")]
    {
        let _ = &launcher;
        let world = msn::dist::mpi::MpiWorld::init()?;
        Ok(Group::new(std::sync::Arc::new(world), timeout))
    }
    #[cfg(not(feature = "mpi"))]
    {
        let _ = timeout;
        anyhow::bail!(
            "an MPI launcher started this process ({launcher}) but this msn was built without MPI; build it with `cargo build --release -p msn-cli --features mpi` (needs Open MPI or MPICH: apt-get install openmpi-bin libopenmpi-dev libclang-dev)"
        )
    }
}

/// Shares the machine's cores among the ranks on it: without this, two
/// ranks on two cores would each start two rayon threads and fight over
/// them. `RAYON_NUM_THREADS`, when set, decides instead.
pub fn share_cores() {
    let Some(local_ranks) = msn::dist::ranks_on_this_machine() else {
        return;
    };
    if local_ranks <= 1 || std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Fails only when the pool already exists, and then it stays as it is.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads((cores / local_ranks).max(1))
        .build_global();
}
