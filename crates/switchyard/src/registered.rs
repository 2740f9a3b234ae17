//! Schemes registered at run time: the way adapters of other crates plug
//! into [`connect`](crate::connect). Looked up after the built-in table of
//! `registry`, which they can never shadow.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};

use futures::future::BoxFuture;
use switchyard_core::{Error, Result, Transport};

use crate::registry::{ADAPTERS, compiled_schemes, valid_scheme};

/// The constructor of a registered scheme: receives the whole URL (scheme
/// in lowercase, surrounding whitespace trimmed) and opens the transport.
pub type SchemeConstructor =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<Arc<dyn Transport>>> + Send + Sync>;

/// How many schemes [`register_scheme`] accepts in one process (the
/// registry is a bounded table, not a cache).
pub const MAX_REGISTERED_SCHEMES: usize = 64;

/// The longest scheme name [`register_scheme`] accepts, in bytes.
pub const MAX_SCHEME_LEN: usize = 64;

/// The schemes added with [`register_scheme`], by lowercase name.
static REGISTERED: RwLock<BTreeMap<String, SchemeConstructor>> = RwLock::new(BTreeMap::new());

/// Makes [`connect`](crate::connect) open `scheme://…` URLs with `constructor`: the way a
/// third-party adapter plugs into `connect(url)` and [`connect_from_env`](crate::connect_from_env).
///
/// `constructor` is an async function of the URL (an owned `String`, the
/// scheme in lowercase) returning the transport. It runs on each `connect`
/// of that scheme; errors it returns reach the caller with any password of
/// the URL scrubbed. The registration lasts for the process (or until
/// [`unregister_scheme`]) and is seen by every thread.
///
/// The scheme is matched without regard to case and stored in lowercase.
/// Refused with [`Error::InvalidConfig`], the registry unchanged:
/// - a name that is not a URL scheme: it must start with an ASCII letter and
///   contain only ASCII letters, digits, `+`, `-` and `.`, at most
///   [`MAX_SCHEME_LEN`] bytes (`myqueue`, `acme+kafka`; not `my queue`, not
///   `myqueue://`);
/// - a built-in scheme (`memory`, `redis+streams`, …), whether or not its
///   feature is compiled in: a plug-in never silently replaces an adapter of
///   this crate, nor starts doing so when a feature is turned on;
/// - a scheme that is already registered (call [`unregister_scheme`] first
///   to replace it);
/// - a registration past [`MAX_REGISTERED_SCHEMES`].
///
/// ```
/// use std::sync::Arc;
/// use switchyard::Transport;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchyard::Result<()> {
/// // A stand-in adapter: `myqueue://NAME` opens the memory hub NAME. A real
/// // one would parse the URL and connect to its backend.
/// async fn connect_myqueue(url: String) -> switchyard::Result<Arc<dyn Transport>> {
///     let name = url.trim_start_matches("myqueue://");
///     switchyard::connect(&format!("memory://{name}")).await
/// }
///
/// switchyard::register_scheme("myqueue", connect_myqueue)?;
/// assert!(switchyard::schemes().contains(&"myqueue".to_owned()));
///
/// let transport = switchyard::connect("myqueue://orders").await?;
/// # let _ = transport;
///
/// // Built-in and already registered schemes are refused.
/// assert!(switchyard::register_scheme("memory", connect_myqueue).is_err());
/// assert!(switchyard::register_scheme("MyQueue", connect_myqueue).is_err());
/// # Ok(()) }
/// ```
pub fn register_scheme<F, Fut>(scheme: &str, constructor: F) -> Result<()>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Arc<dyn Transport>>> + Send + 'static,
{
    let constructor: SchemeConstructor = Arc::new(move |url| Box::pin(constructor(url)));
    register_scheme_boxed(scheme, constructor)
}

/// [`register_scheme`] with a constructor that is already a
/// [`SchemeConstructor`] (for example one kept in a plug-in table).
pub fn register_scheme_boxed(scheme: &str, constructor: SchemeConstructor) -> Result<()> {
    let name = scheme_name(scheme)?;
    if let Some(adapter) = ADAPTERS.iter().find(|a| a.schemes.contains(&name.as_str())) {
        return Err(Error::InvalidConfig(format!(
            "cannot register url scheme {name:?}: it belongs to the built-in {} adapter \
             (feature `{}`); register the adapter under a scheme of its own",
            adapter.feature, adapter.feature
        )));
    }
    let mut table = REGISTERED.write().unwrap_or_else(PoisonError::into_inner);
    if table.contains_key(&name) {
        return Err(Error::InvalidConfig(format!(
            "cannot register url scheme {name:?}: it is already registered; \
             call switchyard::unregister_scheme({name:?}) first to replace it"
        )));
    }
    if table.len() >= MAX_REGISTERED_SCHEMES {
        return Err(Error::InvalidConfig(format!(
            "cannot register url scheme {name:?}: {MAX_REGISTERED_SCHEMES} schemes are \
             registered already (the maximum); unregister one you no longer use"
        )));
    }
    tracing::debug!(scheme = %name, "url scheme registered");
    table.insert(name, constructor);
    Ok(())
}

/// Removes a scheme added with [`register_scheme`]; returns whether it was
/// registered. Transports already opened through it are not affected.
/// Built-in schemes cannot be removed (this returns `false` for them).
pub fn unregister_scheme(scheme: &str) -> bool {
    let name = scheme.trim().to_ascii_lowercase();
    REGISTERED
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&name)
        .is_some()
}

/// Every scheme [`connect`](crate::connect) can open now: the compiled-in ones
/// ([`compiled_schemes`]) followed by the registered ones, sorted.
///
/// ```
/// # #[cfg(feature = "memory")]
/// assert!(switchyard::schemes().contains(&"memory".to_owned()));
/// ```
pub fn schemes() -> Vec<String> {
    let mut all: Vec<String> = compiled_schemes().into_iter().map(str::to_owned).collect();
    all.extend(registered_schemes());
    all
}

/// The registered schemes, sorted.
pub(crate) fn registered_schemes() -> Vec<String> {
    REGISTERED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .keys()
        .cloned()
        .collect()
}

/// The constructor registered for `scheme` (lowercase), cloned out so the
/// lock is not held while it runs.
pub(crate) fn registered(scheme: &str) -> Option<SchemeConstructor> {
    REGISTERED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(scheme)
        .cloned()
}

/// The lowercase form of a scheme name given to [`register_scheme`], or why
/// it is not one.
fn scheme_name(scheme: &str) -> Result<String> {
    let shown: String = scheme.chars().take(MAX_SCHEME_LEN).collect();
    let refuse = |why: &str| {
        Err(Error::InvalidConfig(format!(
            "cannot register url scheme {shown:?}: {why}"
        )))
    };
    if scheme.is_empty() {
        return refuse("the name is empty; give the part before `://`, for example \"myqueue\"");
    }
    if scheme.len() > MAX_SCHEME_LEN {
        return refuse(&format!(
            "the name is {} bytes long, the maximum is {MAX_SCHEME_LEN}",
            scheme.len()
        ));
    }
    if !valid_scheme(scheme) {
        return refuse(
            "a scheme starts with a letter and contains only letters, digits, '+', '-' and '.' \
             (give the part before `://`, for example \"myqueue\")",
        );
    }
    Ok(scheme.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is bounded: registration past the maximum is refused
    /// with an error that says what to do, and nothing is added.
    #[test]
    fn registrations_are_bounded() {
        let never = |_url: String| async { Err::<Arc<dyn Transport>, _>(Error::Closed) };
        let mut added = Vec::new();
        let refusal = loop {
            let name = format!("bounded-{}", added.len());
            match register_scheme(&name, never) {
                Ok(()) => added.push(name),
                Err(e) => break e,
            }
            assert!(added.len() <= MAX_REGISTERED_SCHEMES, "no bound");
        };
        assert!(
            refusal
                .to_string()
                .contains("64 schemes are registered already"),
            "{refusal}"
        );
        assert_eq!(registered_schemes().len(), MAX_REGISTERED_SCHEMES);
        for name in &added {
            assert!(unregister_scheme(name));
        }
        assert!(
            registered_schemes()
                .iter()
                .all(|s| !s.starts_with("bounded-"))
        );
    }
}
