//! Guides: how to run, operate and extend the crate, the long form of the README's front
//! page. Each is a module of its own, with nothing in it but its text; their examples run as
//! doctests.
//!
//! | guide | what |
//! |---|---|
//! | [`configuration`] | Options on the layer and the validator; what callers get; what a bad request costs |
//! | [`policies`] | Rate limits, quotas and IP allow-lists, on one server and across a fleet |
//! | [`fleet`] | Several servers on one PostgreSQL database: set-up, TLS, what it costs the database |
//! | [`admin`] | The admin REST API, permission guards and rejections |
//! | [`console`] | The admin console in the browser |
//! | [`selfservice`] | An app's own users make and manage their keys |
//! | [`tokens`] | Exchanging a key for a short-lived access token, and verifying it offline |
//! | [`cli`] | The `tower-apikey` command-line tool |
//! | [`events`] | Key events, webhooks and expiry warnings |
//! | [`usage`] | Requests per key by outcome, and the audit trail |
//! | [`leaks`] | The key format, and finding and revoking leaked keys |
//! | [`legacy`] | Imported IBM Maximo keys |
//! | [`integrations`] | tonic, hyper, tracing, metrics |
//! | [`your_store`] | Keeping keys in a store of your own |
//! | [`performance`] | What each path costs, measured |
//! | [`layout`] | The code, file by file, and how to work on it |

pub mod configuration {
    #![doc = include_str!("docs/configuration.md")]
}

pub mod policies {
    #![doc = include_str!("docs/policies.md")]
}

pub mod fleet {
    #![doc = include_str!("docs/fleet.md")]
}

pub mod admin {
    #![doc = include_str!("docs/admin.md")]
}

pub mod console {
    #![doc = include_str!("docs/console.md")]
}

pub mod selfservice {
    #![doc = include_str!("docs/selfservice.md")]
}

pub mod tokens {
    #![doc = include_str!("docs/tokens.md")]
}

pub mod cli {
    #![doc = include_str!("docs/cli.md")]
}

pub mod events {
    #![doc = include_str!("docs/events.md")]
}

pub mod usage {
    #![doc = include_str!("docs/usage.md")]
}

pub mod leaks {
    #![doc = include_str!("docs/leaks.md")]
}

pub mod legacy {
    #![doc = include_str!("docs/legacy.md")]
}

pub mod integrations {
    #![doc = include_str!("docs/integrations.md")]
}

pub mod your_store {
    #![doc = include_str!("docs/your_store.md")]
}

pub mod performance {
    #![doc = include_str!("docs/performance.md")]
}

pub mod layout {
    #![doc = include_str!("docs/layout.md")]
}
