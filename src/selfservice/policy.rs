//! The rules a user's own keys obey ([`SelfServicePolicy`]), and the limits a user's plan sets
//! ([`PlanLimits`]): what a request for a new key may ask for, checked before the key manager
//! sees it.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::AccountUser;
use crate::identity::permission_covers;
use crate::lifecycle::{Expiry, NewKey};
use crate::policy::{Quota, RateLimit};

/// The rules every user's own keys obey; an app changes the defaults, and a user's
/// [`PlanLimits`] may change some for that user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SelfServicePolicy {
    /// The longest a key may live (default 366 days, GitHub's organisation policy). An
    /// expiry is always required.
    pub max_lifetime: Duration,
    /// The expiry choices the page offers, each within `max_lifetime` (default 7, 30, 90, 180
    /// and 366 days).
    pub lifetimes: Vec<Duration>,
    /// The highest rate limit a user's key may have, unless their plan says otherwise
    /// (default none: any). Where set, a key asked for without one gets this.
    pub max_rate_limit: Option<RateLimit>,
    /// The largest quota a user's key may have, unless their plan says otherwise (default
    /// none: any). Where set, a key asked for without one gets this.
    pub max_quota: Option<Quota>,
}

const DAY: u64 = 24 * 60 * 60;

impl Default for SelfServicePolicy {
    fn default() -> Self {
        Self {
            max_lifetime: Duration::from_secs(366 * DAY),
            lifetimes: [7, 30, 90, 180, 366]
                .into_iter()
                .map(|d| Duration::from_secs(d * DAY))
                .collect(),
            max_rate_limit: None,
            max_quota: None,
        }
    }
}

/// One user's limits, from their plan: each that is set replaces the policy's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlanLimits {
    /// The longest their keys may live.
    pub max_lifetime: Option<Duration>,
    /// The highest rate limit their keys may have.
    pub max_rate_limit: Option<RateLimit>,
    /// The largest quota their keys may have.
    pub max_quota: Option<Quota>,
}

impl PlanLimits {
    /// No limits of its own: the policy's hold.
    pub fn new() -> Self {
        Self::default()
    }

    /// The longest their keys may live.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = Some(lifetime);
        self
    }

    /// The highest rate limit their keys may have.
    pub fn max_rate_limit(mut self, limit: RateLimit) -> Self {
        self.max_rate_limit = Some(limit);
        self
    }

    /// The largest quota their keys may have.
    pub fn max_quota(mut self, quota: Quota) -> Self {
        self.max_quota = Some(quota);
        self
    }
}

/// What a user asks for: a new key's name, permissions, expiry and policies, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyRequest {
    /// Required.
    pub name: Option<String>,
    /// Each covered by a permission the user holds.
    pub permissions: Vec<String>,
    /// Required: a duration (`30d`, `P1W`) or a time, within the longest lifetime.
    pub expires: Option<String>,
    /// At most the plan's (`100/1m`).
    pub rate_limit: Option<String>,
    /// At most the plan's (`10000/1d`).
    pub quota: Option<String>,
}

/// Why a request for a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyRefusal {
    /// A field is missing or does not parse (400).
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A permission the user does not hold (403).
    #[error("you do not hold the permission {0:?}")]
    NotHeld(String),
    /// More than the user's plan allows (403).
    #[error("{field}: at most {allowed}")]
    OverPlan {
        /// `rate_limit` or `quota`.
        field: &'static str,
        /// What the plan allows.
        allowed: String,
    },
}

impl SelfServicePolicy {
    /// The longest `user`'s keys may live.
    pub fn max_lifetime_of(&self, user: &AccountUser) -> Duration {
        user.limits
            .as_ref()
            .and_then(|l| l.max_lifetime)
            .unwrap_or(self.max_lifetime)
    }

    /// The expiry choices for `user`: the policy's, within their longest lifetime.
    pub fn lifetimes_of(&self, user: &AccountUser) -> Vec<Duration> {
        let max = self.max_lifetime_of(user);
        self.lifetimes
            .iter()
            .copied()
            .filter(|d| *d <= max)
            .collect()
    }

    /// The key `user` may have for `request` at `now`, or why not. The key manager then
    /// applies its own rules (the per-principal limit, lengths of text).
    ///
    /// # Errors
    /// [`PolicyRefusal`], for the first field that breaks a rule.
    pub fn check(
        &self,
        user: &AccountUser,
        request: &KeyRequest,
        now: Timestamp,
    ) -> Result<NewKey, PolicyRefusal> {
        let invalid = |field, message: &str| PolicyRefusal::Invalid {
            field,
            message: message.to_owned(),
        };
        let name = request
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("name", "a name is required"))?;
        for permission in &request.permissions {
            if !permission_covers(&user.permissions, permission) {
                return Err(PolicyRefusal::NotHeld(permission.clone()));
            }
        }
        let max = self.max_lifetime_of(user);
        let max_days = max.as_secs() / DAY;
        let within = format!("an expiry is required, at most {max_days} days away");
        let expires = request
            .expires
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| invalid("expires", &within))?;
        let at = expires
            .parse::<Expiry>()
            .and_then(|e| e.resolve(now))
            .map_err(|e| invalid("expires", &e.to_string()))?
            .ok_or_else(|| invalid("expires", &within))?;
        let latest = SignedDuration::try_from(max)
            .ok()
            .and_then(|d| now.checked_add(d).ok())
            .unwrap_or(Timestamp::MAX);
        if at > latest || at <= now {
            return Err(invalid("expires", &within));
        }
        // To the microsecond, the precision records are kept at in every store.
        let at = Timestamp::from_microsecond(at.as_microsecond()).unwrap_or(at);
        let (rate_limit, quota) = self.limits_for(user, request)?;
        Ok(NewKey::new(user.principal.clone())
            .name(name)
            .permissions(request.permissions.iter().cloned())
            .expires(Expiry::At(at))
            .rate_limit(rate_limit)
            .quota(quota))
    }
}

impl SelfServicePolicy {
    /// The rate limit and quota `user`'s key gets for `request`: what was asked for, within
    /// the plan's (or the policy's) maximum; the maximum where nothing was asked for.
    fn limits_for(
        &self,
        user: &AccountUser,
        request: &KeyRequest,
    ) -> Result<(Option<RateLimit>, Option<Quota>), PolicyRefusal> {
        let invalid = |field, message: String| PolicyRefusal::Invalid { field, message };
        let typed = |text: &Option<String>| {
            text.as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
        };
        let plan = user.limits.as_ref();
        let max_rate = plan.and_then(|p| p.max_rate_limit).or(self.max_rate_limit);
        let rate_limit = match typed(&request.rate_limit) {
            None => max_rate,
            Some(text) => {
                let limit: RateLimit =
                    text.parse().map_err(|e: crate::policy::RateLimitError| {
                        invalid("rate_limit", e.to_string())
                    })?;
                if let Some(max) = max_rate.filter(|max| !rate_within(&limit, max)) {
                    return Err(PolicyRefusal::OverPlan {
                        field: "rate_limit",
                        allowed: max.to_string(),
                    });
                }
                Some(limit)
            }
        };
        let max_quota = plan.and_then(|p| p.max_quota).or(self.max_quota);
        let quota = match typed(&request.quota) {
            None => max_quota,
            Some(text) => {
                let quota: Quota = text
                    .parse()
                    .map_err(|e: crate::policy::QuotaError| invalid("quota", e.to_string()))?;
                if let Some(max) = max_quota.filter(|max| !quota_within(&quota, max)) {
                    return Err(PolicyRefusal::OverPlan {
                        field: "quota",
                        allowed: max.to_string(),
                    });
                }
                Some(quota)
            }
        };
        Ok((rate_limit, quota))
    }
}

/// Whether `limit` allows no more than `max`: no bigger a burst, no faster a rate.
fn rate_within(limit: &RateLimit, max: &RateLimit) -> bool {
    limit.requests() <= max.requests()
        && u128::from(limit.requests()) * u128::from(max.period().as_secs())
            <= u128::from(max.requests()) * u128::from(limit.period().as_secs())
}

/// Whether `quota` allows no more than `max`: no more uses at once, and (where `max`
/// refills) no more uses per unit of time; a quota that never refills is within a refilling
/// one when it holds no more than one period's uses.
fn quota_within(quota: &Quota, max: &Quota) -> bool {
    if quota.uses() > max.uses() {
        return false;
    }
    match (quota.refill(), max.refill()) {
        (_, None) => quota.refill().is_none(),
        (None, Some(_)) => true,
        (Some(period), Some(max_period)) => {
            u128::from(quota.uses()) * u128::from(max_period.as_secs())
                <= u128::from(max.uses()) * u128::from(period.as_secs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(permissions: &[&str]) -> AccountUser {
        AccountUser::new("alice", permissions.iter().map(|p| p.to_string()))
    }

    fn request(permissions: &[&str], expires: &str) -> KeyRequest {
        KeyRequest {
            name: Some("ci job".into()),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            expires: Some(expires.into()),
            ..KeyRequest::default()
        }
    }

    #[test]
    fn a_key_gets_only_what_its_user_holds_for_at_most_the_longest_lifetime() {
        let policy = SelfServicePolicy::default();
        let now: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let alice = user(&["read", "reports:*"]);
        assert!(policy
            .check(&alice, &request(&["read"], "30d"), now)
            .is_ok());
        assert!(policy
            .check(&alice, &request(&["reports:read"], "366d"), now)
            .is_ok());
        assert!(policy
            .check(&alice, &request(&["reports:*"], "P1W"), now)
            .is_ok());
        for (asked, named) in [(&["write"], "write"), (&["*"], "*")] {
            assert_eq!(
                policy.check(&alice, &request(asked, "30d"), now).err(),
                Some(PolicyRefusal::NotHeld(named.into()))
            );
        }
        for expires in ["367d", "never", "", "-1", "2020-01-01T00:00:00Z", "soon"] {
            assert!(
                matches!(
                    policy.check(&alice, &request(&["read"], expires), now),
                    Err(PolicyRefusal::Invalid {
                        field: "expires",
                        ..
                    })
                ),
                "{expires:?}"
            );
        }
        let mut nameless = request(&["read"], "30d");
        nameless.name = Some("  ".into());
        assert!(matches!(
            policy.check(&alice, &nameless, now),
            Err(PolicyRefusal::Invalid { field: "name", .. })
        ));
        // A plan's shorter lifetime.
        let short = alice
            .clone()
            .limits(PlanLimits::new().max_lifetime(Duration::from_secs(30 * DAY)));
        assert!(policy
            .check(&short, &request(&["read"], "31d"), now)
            .is_err());
        assert_eq!(policy.lifetimes_of(&short).len(), 2);
    }

    #[test]
    fn limits_are_at_most_the_plans_and_default_to_it() {
        let policy = SelfServicePolicy::default();
        let now: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let plan = PlanLimits::new()
            .max_rate_limit("100/1m".parse().unwrap())
            .max_quota("10000/1d".parse().unwrap());
        let alice = user(&["read"]).limits(plan);
        let with = |rate: &str, quota: &str| {
            let mut r = request(&["read"], "30d");
            r.rate_limit = Some(rate.into());
            r.quota = Some(quota.into());
            policy.check(&alice, &r, now)
        };
        assert!(with("100/1m", "10000/1d").is_ok());
        assert!(with("10/1s", "").is_err(), "600 a minute");
        assert!(with("101/1m", "").is_err());
        assert!(
            with("200/2m", "").is_err(),
            "a bigger burst at the same rate"
        );
        assert!(with("50/1m", "").is_ok());
        assert!(with("", "70000/7d").is_err(), "a bigger burst");
        assert!(with("", "5000/1d").is_ok());
        assert!(with("", "10000").is_ok(), "once, no more than a day's");
        assert!(with("", "10000/12h").is_err(), "twice the rate");
        // Asked for none: the plan's.
        assert_eq!(
            policy.limits_for(&alice, &request(&["read"], "30d")),
            Ok((
                Some("100/1m".parse().unwrap()),
                Some("10000/1d".parse().unwrap())
            ))
        );
        // No plan, no policy maximum: anything.
        let bob = user(&["read"]);
        let mut r = request(&["read"], "30d");
        r.rate_limit = Some("1000000/1s".into());
        assert!(policy.check(&bob, &r, now).is_ok());
    }
}
