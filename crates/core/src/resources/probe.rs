/// What a probe measured at one moment.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ResourceReading {
    /// Memory that can be allocated without swapping or an OOM kill, in bytes: inside a
    /// container, the smaller of the host's and the cgroup's.
    pub available_memory_bytes: u64,
    /// Free space for unprivileged users on the watched file system, in bytes; `None`
    /// when not measured (the disk threshold is then not applied).
    pub free_disk_bytes: Option<u64>,
    /// Linux PSI memory `some avg10`, in percent; `None` where the kernel does not report
    /// it (the pressure threshold is then not applied).
    pub memory_pressure_pct: Option<f64>,
}

impl ResourceReading {
    /// A reading of memory alone.
    pub fn memory_only(available_memory_bytes: u64) -> Self {
        ResourceReading {
            available_memory_bytes,
            free_disk_bytes: None,
            memory_pressure_pct: None,
        }
    }
}

/// A source of [`ResourceReading`]s.
///
/// A [`Sampler`](super::Sampler) calls [`read`](Self::read) on its own thread, one call
/// at a time, so a probe may keep state (sysinfo's buffers) without synchronising.
pub trait ResourceProbe: Send {
    /// Measures now.
    ///
    /// # Errors
    ///
    /// A [`ProbeError`] when a source could not be read. The gate keeps its last
    /// reading, and goes stale if errors last longer than the maximum sample age.
    fn read(&mut self) -> Result<ResourceReading, ProbeError>;
}

impl<P: ResourceProbe + ?Sized> ResourceProbe for Box<P> {
    fn read(&mut self) -> Result<ResourceReading, ProbeError> {
        (**self).read()
    }
}

/// A probe could not measure a resource.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {what}: {source}")]
pub struct ProbeError {
    what: String,
    #[source]
    source: std::io::Error,
}

impl ProbeError {
    /// A failure to read `what` (a path or a resource name).
    pub fn new(what: impl Into<String>, source: std::io::Error) -> Self {
        ProbeError {
            what: what.into(),
            source,
        }
    }

    /// What could not be read.
    pub fn what(&self) -> &str {
        &self.what
    }
}
