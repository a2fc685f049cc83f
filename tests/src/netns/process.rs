//! A managed child process running inside a private network: a
//! [`ChildProcess`] (own process group, output in a log file, killed on
//! drop) that also keeps its network alive until it has been stopped.

use std::ops::{Deref, DerefMut};

use crate::process::ChildProcess;

use super::PrivateNetwork;

pub struct InsideProcess {
    // Field order matters: the process stops before the network can go.
    process: ChildProcess,
    network: PrivateNetwork,
}

impl InsideProcess {
    pub(super) fn new(process: ChildProcess, network: PrivateNetwork) -> InsideProcess {
        InsideProcess { process, network }
    }

    /// The network the process runs in.
    pub fn network(&self) -> &PrivateNetwork {
        &self.network
    }
}

impl Deref for InsideProcess {
    type Target = ChildProcess;
    fn deref(&self) -> &ChildProcess {
        &self.process
    }
}

impl DerefMut for InsideProcess {
    fn deref_mut(&mut self) -> &mut ChildProcess {
        &mut self.process
    }
}
