//! Property tests of the `memory://` URL parser
//! (`MemoryTransport::from_url`).
//!
//! Properties: no panic on any input; what is written reads back as the
//! hub's name and configuration; a password in a (refused) memory URL
//! never shows in the error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proptest::prelude::*;
use switchyard_memory::{MemoryConfig, MemoryTransport};

proptest! {
    #[test]
    fn from_url_never_panics(s in "\\PC{0,80}") {
        let _ = MemoryTransport::from_url(&s);
    }

    #[test]
    fn from_url_never_panics_on_url_like_text(
        s in "(memory|MEMORY|Memory|redis)(://)?[a-z0-9._@:/\\-]{0,12}(\\?([a-z_]{0,22}(=[0-9a-z\\-]{0,22})?&?){0,4})?(#x)?"
    ) {
        let _ = MemoryTransport::from_url(&s);
    }

    /// Name and parameters read back; the hub is created with them (the
    /// name is unique to this case, so the hub is new).
    #[test]
    fn components_round_trip(
        name in proptest::option::of("[a-zA-Z0-9._\\-]{1,40}"),
        retention in proptest::option::of(1u64..=100_000_000),
        dead in proptest::option::of(1u64..=100_000_000),
        tick in proptest::option::of(1u64..=60_000),
        case in any::<u64>(),
        slash in any::<bool>(),
    ) {
        let name = name.map(|n| format!("{n}-{case:x}"));
        let mut params = Vec::new();
        if let Some(r) = retention { params.push(format!("retention={r}")); }
        if let Some(d) = dead { params.push(format!("dead_letter_retention={d}")); }
        if let Some(t) = tick { params.push(format!("redelivery_tick_ms={t}")); }
        let url = format!(
            "memory://{}{}{}{}",
            name.as_deref().unwrap_or(""),
            if slash { "/" } else { "" },
            if params.is_empty() { "" } else { "?" },
            params.join("&")
        );
        let Ok(t) = MemoryTransport::from_url(&url) else {
            // Only names over 128 bytes are refused.
            prop_assert!(name.as_ref().is_some_and(|n| n.len() > 128), "{} refused", url);
            return Ok(());
        };
        let hub = t.hub();
        prop_assert_eq!(hub.name(), name.as_deref());
        let want = MemoryConfig::default();
        let cfg = hub.config();
        prop_assert_eq!(cfg.retention as u64, retention.unwrap_or(want.retention as u64));
        prop_assert_eq!(cfg.dead_letter_retention as u64, dead.unwrap_or(want.dead_letter_retention as u64));
        prop_assert_eq!(cfg.redelivery_tick, tick.map_or(want.redelivery_tick, Duration::from_millis));
    }

    /// Bad values and unknown parameters are refused, naming the
    /// parameter; 0 is refused for the tick, and means the largest
    /// retention (no cap, bounded) for the retentions.
    #[test]
    fn zero_and_unknown_parameters_are_refused(
        key in prop_oneof![Just("retention"), Just("dead_letter_retention"), Just("redelivery_tick_ms"), Just("nope")],
        value in prop_oneof![Just("0"), Just("-1"), Just("x"), Just(""), Just("18446744073709551616")],
    ) {
        let url = format!("memory://?{key}={value}");
        match MemoryTransport::from_url(&url) {
            Ok(t) => {
                prop_assert!(value == "0" && key.ends_with("retention"), "{} accepted", url);
                let cfg = t.hub().config().clone();
                let kept = if key == "retention" { cfg.retention } else { cfg.dead_letter_retention };
                prop_assert_eq!(kept, MemoryConfig::MAX_RETENTION);
            }
            Err(e) => prop_assert!(e.to_string().contains(key), "{}", e),
        }
    }

    #[test]
    fn password_never_shows(secret in "[!-~]{0,12}", host in "[a-z]{0,8}") {
        let password = format!("Zq7{secret}");
        let url = format!("memory://app:{password}@{host}");
        let e = MemoryTransport::from_url(&url).err().unwrap();
        let shown = format!("{e} {e:?}");
        prop_assert!(!shown.contains(&password), "{} shows {}", url, shown);
    }
}
