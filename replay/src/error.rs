use choreo_bus::BusError;

/// Why a replay or a dead-letter operation was refused or failed. A refusal moves nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The request itself is wrong (a window, a name, a rule pattern that cannot be narrowed).
    #[error("{0}")]
    Invalid(String),
    /// Something it names does not exist (archive, rule, case, replay, message).
    #[error("{0}")]
    Unknown(String),
    /// The replay name is taken.
    #[error("replay `{0}` already exists; choose another --name")]
    NameInUse(String),
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl ReplayError {
    /// Whether the bus refused the request as bad input (as opposed to failing).
    pub fn is_bad_input(&self) -> bool {
        match self {
            ReplayError::Invalid(_) | ReplayError::Unknown(_) | ReplayError::NameInUse(_) => true,
            ReplayError::Bus(e) => {
                !matches!(e, BusError::Storage { .. } | BusError::Closed | BusError::Internal(_) | BusError::Config(_))
                    && !e.is_retryable()
            }
        }
    }
}
