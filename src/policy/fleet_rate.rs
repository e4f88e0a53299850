//! What validators on one store tell each other to hold a rate limit across a fleet: a
//! validator's counts out ([`RateShare`]), the fleet's totals and who is sharing back
//! ([`FleetRates`]). The exchange is
//! [`UsageStore::share_rate_usage`](crate::store::UsageStore::share_rate_usage).

use std::time::Duration;

use crate::key::KeyId;

/// One validator's share: who it is, and the requests it admitted per rate-limited key since
/// its last share.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateShare {
    /// The sharing validator: a random id it keeps for its life.
    pub server: u64,
    /// Requests admitted per key since this validator's last share, each id once, ordered by
    /// id. Empty: the validator only says it is there (as it does when it starts).
    pub admitted: Vec<(KeyId, u64)>,
    /// A server that shared requests admitted of a key (a count above 0) within this long
    /// counts as admitting it ([`KeyFleetRate::servers`]).
    pub active_within: Duration,
}

impl RateShare {
    /// How long a validator counts in [`FleetRates::servers`] after its last share.
    pub const SERVER_MEMORY: Duration = Duration::from_secs(3_600);

    /// `server`'s share of `admitted`; a server that admitted a key within `active_within`
    /// counts as admitting it.
    pub fn new(server: u64, admitted: Vec<(KeyId, u64)>, active_within: Duration) -> Self {
        Self {
            server,
            admitted,
            active_within,
        }
    }
}

/// What the fleet answers a [`RateShare`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetRates {
    /// Validators that shared (anything, an empty share included) within
    /// [`RateShare::SERVER_MEMORY`], the sharing one included.
    pub servers: u32,
    /// Each key of the share, in its order.
    pub keys: Vec<KeyFleetRate>,
}

impl FleetRates {
    /// `servers` validators on the store; `keys`' totals.
    pub fn new(servers: u32, keys: Vec<KeyFleetRate>) -> Self {
        Self { servers, keys }
    }
}

/// One key's use across the fleet, as a share's answer gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyFleetRate {
    /// The key.
    pub id: KeyId,
    /// Requests admitted through every handle of the store since the total began (it may
    /// begin again at 0, say when the key is deleted), this share's included.
    pub admitted: u64,
    /// Validators that shared requests admitted of the key (a count above 0) within the
    /// share's [`active_within`](RateShare::active_within), the sharing one always included.
    pub servers: u32,
}

impl KeyFleetRate {
    /// `id`'s total of `admitted`, admitted by `servers` validators lately.
    pub fn new(id: KeyId, admitted: u64, servers: u32) -> Self {
        Self {
            id,
            admitted,
            servers,
        }
    }
}
