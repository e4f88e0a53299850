//! The frame every page shares: the document, the header with its navigation and the
//! sign-out button, and where the console is mounted ([`Base`]), which every link starts
//! with.

use std::fmt;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use maud::{html, Markup, Render, DOCTYPE};

use super::assets::{CSS_PATH, JS_PATH};
use super::auth::{SignedIn, Via};

/// The path the console is mounted under (`/console`; empty at the root), from the request's
/// original path less its path within the router.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Base(String);

impl Base {
    pub(crate) fn of(request: &axum::extract::Request) -> Self {
        let local = request.uri().path();
        let original = request
            .extensions()
            .get::<OriginalUri>()
            .map_or(local, |o| o.0.path());
        let base = match original.strip_suffix(local) {
            Some(base) => base,
            // `/console` nested: the router sees `/`.
            None if local == "/" => original,
            None => "",
        };
        Self(base.trim_end_matches('/').to_owned())
    }

    /// `path` (starting with `/`) under the console.
    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }

    /// The mount itself (`/` at the root): where a router's `/` is reached, as nesting does
    /// not answer the mount with a slash added.
    #[cfg(feature = "selfservice")]
    pub(crate) fn root(&self) -> &str {
        self.cookie_path()
    }

    /// The cookie path for plain HTTP: the console's own (`/` at the root).
    pub(crate) fn cookie_path(&self) -> &str {
        if self.0.is_empty() {
            "/"
        } else {
            &self.0
        }
    }
}

impl fmt::Display for Base {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Render for Base {
    fn render_to(&self, buffer: &mut String) {
        self.0.render_to(buffer);
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Base>().cloned().unwrap_or_default())
    }
}

/// A page for someone signed in: navigation, who they are, and "Sign out".
pub(crate) fn page(who: &SignedIn, title: &str, body: Markup) -> Markup {
    let base = &who.base;
    document(
        base,
        title,
        html! {
            header.top {
                nav aria-label="Console" {
                    a.brand href=(base.at("/keys")) { "API keys" }
                    a href=(base.at("/keys")) { "Keys" }
                    a href=(base.at("/keys/new")) { "New key" }
                    a href=(base.at("/events")) { "Audit log" }
                    a href=(base.at("/verify")) { "Verify a key" }
                }
                @if matches!(who.via, Via::Key { .. }) {
                    form.sign-out method="post" action=(base.at("/sign-out")) {
                        span.who { "Signed in as " strong { (who.name) } }
                        input type="hidden" name="csrf" value=(who.csrf_token);
                        button type="submit" { "Sign out" }
                    }
                } @else {
                    span.who { "Signed in as " strong { (who.name) } }
                }
            }
            main id="main" { (body) }
        },
    )
}

/// A page of a user's own account (self-service): who they are, no console navigation.
#[cfg(feature = "selfservice")]
pub(crate) fn account(base: &Base, name: &str, title: &str, body: Markup) -> Markup {
    document(
        base,
        title,
        html! {
            header.top {
                span.brand { "API keys" }
                span.who { "Signed in as " strong { (name) } }
            }
            main id="main" { (body) }
        },
    )
}

/// A page for anyone (sign-in, errors): no navigation.
pub(crate) fn bare(base: &Base, title: &str, body: Markup) -> Markup {
    document(
        base,
        title,
        html! {
            header.top { span.brand { "API keys" } }
            main id="main" { (body) }
        },
    )
}

fn document(base: &Base, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · API keys" }
                link rel="stylesheet" href=(base.at(CSS_PATH));
                script src=(base.at(JS_PATH)) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                (body)
            }
        }
    }
}
