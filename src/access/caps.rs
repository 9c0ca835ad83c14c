//! A tenant's send and spend caps over UTC clock hours and days, pure and taking `now`:
//! whether one more send fits, and the usage after it.

use std::time::Duration;

use std::collections::{BTreeMap, HashMap};

use super::settings::{PricingSettings, TenantSettings};
pub use crate::domain::records::{SendsAndSpend, TenantUsage};
use crate::domain::{Channel, Destination, PeriodCounter, PeriodKind, Timestamp};

/// The periods the `…_per_hour` and `…_per_day` caps count in.
const HOUR: PeriodKind = PeriodKind::CLOCK_HOUR;
const DAY: PeriodKind = PeriodKind::UtcDay;

/// A tenant's caps; `None` is no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub sends_per_hour: Option<u64>,
    pub sends_per_day: Option<u64>,
    pub spend_per_hour: Option<u64>,
    pub spend_per_day: Option<u64>,
}

impl Caps {
    pub fn from_settings(settings: &TenantSettings) -> Self {
        Caps {
            sends_per_hour: settings.sends_per_hour,
            sends_per_day: settings.sends_per_day,
            spend_per_hour: settings.spend_per_hour,
            spend_per_day: settings.spend_per_day,
        }
    }

    /// Whether any cap is set (without one, usage is not even counted).
    pub fn any(&self) -> bool {
        self.sends_per_hour.is_some()
            || self.sends_per_day.is_some()
            || self.spend_per_hour.is_some()
            || self.spend_per_day.is_some()
    }
}

/// Every tenant's caps and the price table: which sends are counted, and at what cost.
#[derive(Debug, Clone, Default)]
pub struct CapTable {
    caps: HashMap<String, Caps>,
    pricing: PricingSettings,
}

impl CapTable {
    pub fn from_settings(
        tenants: &BTreeMap<String, TenantSettings>,
        pricing: &PricingSettings,
    ) -> Self {
        CapTable {
            caps: tenants
                .iter()
                .map(|(name, tenant)| (name.clone(), Caps::from_settings(tenant)))
                .filter(|(_, caps)| caps.any())
                .collect(),
            pricing: pricing.clone(),
        }
    }

    /// The tenants with caps, whose sends are counted.
    pub fn capped_tenants(&self) -> impl Iterator<Item = &str> {
        self.caps.keys().map(String::as_str)
    }

    /// The caps of `tenant` (none for a tenant without settings).
    pub fn caps(&self, tenant: &str) -> Caps {
        self.caps.get(tenant).copied().unwrap_or_default()
    }

    /// What a send of `tenant` on `channel` to `destination` counts against its caps, or
    /// `None` when the tenant has no caps (its sends are not counted at all).
    pub fn charge(&self, tenant: &str, channel: Channel, destination: &Destination) -> Option<u64> {
        self.caps
            .contains_key(tenant)
            .then(|| self.pricing.cost(channel, destination.country()))
    }
}

/// The cap one more send would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapReached {
    /// The setting's field name under `tenants.<name>`, e.g. `sends_per_hour`.
    pub setting: &'static str,
    pub limit: u64,
    /// Until the window of that cap ends.
    pub retry_after: Duration,
}

impl CapReached {
    /// A message for the caller, naming the setting of `tenant` to raise.
    pub fn message(&self, tenant: &str) -> String {
        let (what, per) = match self.setting {
            "sends_per_hour" => ("sends", "hour"),
            "sends_per_day" => ("sends", "day"),
            "spend_per_hour" => ("cost units of spend", "hour"),
            _ => ("cost units of spend", "day"),
        };
        format!(
            "Tenant {tenant} has used its {limit} {what} for this {per} (tenants.{tenant}.{setting}); retry when the {per} ends, or raise that setting.",
            limit = self.limit,
            setting = self.setting,
        )
    }
}

/// Admits one send costing `cost` at `now`, returning the usage after it, or the cap it
/// would pass. Of several caps passed, the one whose window ends last is reported, since
/// waiting for it frees them all.
pub fn admit(
    usage: &TenantUsage,
    caps: &Caps,
    cost: u64,
    now: Timestamp,
) -> Result<TenantUsage, CapReached> {
    let hour = usage.hour.at(HOUR, now);
    let day = usage.day.at(DAY, now);
    let hour_ends = hour.ends(HOUR);
    let day_ends = day.ends(DAY);
    let (hour_after, day_after) = (hour.counts.plus_send(cost), day.counts.plus_send(cost));
    let checks = [
        (
            "sends_per_day",
            caps.sends_per_day,
            day_after.sends,
            day_ends,
        ),
        (
            "spend_per_day",
            caps.spend_per_day,
            day_after.spend,
            day_ends,
        ),
        (
            "sends_per_hour",
            caps.sends_per_hour,
            hour_after.sends,
            hour_ends,
        ),
        (
            "spend_per_hour",
            caps.spend_per_hour,
            hour_after.spend,
            hour_ends,
        ),
    ];
    for (setting, cap, after, ends) in checks {
        if let Some(limit) = cap {
            if after > limit {
                return Err(CapReached {
                    setting,
                    limit,
                    retry_after: now.until(ends),
                });
            }
        }
    }
    Ok(TenantUsage {
        hour: PeriodCounter {
            counts: hour_after,
            ..hour
        },
        day: PeriodCounter {
            counts: day_after,
            ..day
        },
    })
}

/// The usage with a send costing `cost`, counted at `taken_at`, taken back out: a send that
/// did not happen after all. A period that has ended since keeps its count.
pub fn give_back(usage: &TenantUsage, cost: u64, taken_at: Timestamp) -> TenantUsage {
    let minus = |counter: PeriodCounter<SendsAndSpend>, kind: PeriodKind| {
        if counter.start == kind.start(taken_at) {
            PeriodCounter {
                counts: counter.counts.minus_send(cost),
                ..counter
            }
        } else {
            counter
        }
    };
    TenantUsage {
        hour: minus(usage.hour, HOUR),
        day: minus(usage.day, DAY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: u64 = 3_600_000;
    const DAY_MS: u64 = 86_400_000;

    /// 2027-01-15T06:00:00Z, the start of an hour.
    const HOUR_START: Timestamp = Timestamp(1_799_992_800_000);

    fn caps(sends_per_hour: u64) -> Caps {
        Caps {
            sends_per_hour: Some(sends_per_hour),
            ..Caps::default()
        }
    }

    #[test]
    fn the_hour_start_is_aligned() {
        assert_eq!(HOUR_START.0 % HOUR_MS, 0);
    }

    #[test]
    fn refuses_past_the_hourly_cap_until_the_hour_ends() {
        let mut usage = TenantUsage::default();
        let now = HOUR_START.plus_secs(600);
        for _ in 0..3 {
            usage = admit(&usage, &caps(3), 1, now).unwrap();
        }
        let refused = admit(&usage, &caps(3), 1, now).unwrap_err();
        assert_eq!(refused.setting, "sends_per_hour");
        assert_eq!(refused.retry_after, Duration::from_secs(3000));
        assert!(refused
            .message("acme")
            .contains("tenants.acme.sends_per_hour"));
        // The next hour starts afresh.
        let next_hour = HOUR_START.plus_secs(3600);
        let after = admit(&usage, &caps(3), 1, next_hour).unwrap();
        assert_eq!(after.hour.counts.sends, 1);
        assert_eq!(after.day.counts.sends, 4);
    }

    #[test]
    fn spend_counts_the_cost_and_the_day_cap_outlasts_the_hour() {
        let caps = Caps {
            spend_per_hour: Some(10),
            spend_per_day: Some(12),
            ..Caps::default()
        };
        let now = HOUR_START;
        let usage = admit(&TenantUsage::default(), &caps, 7, now).unwrap();
        let refused = admit(&usage, &caps, 7, now).unwrap_err();
        // Both caps are passed; the day's is the one to wait for.
        assert_eq!(refused.setting, "spend_per_day");
        let day_end = Timestamp(now.0 - now.0 % DAY_MS + DAY_MS);
        assert_eq!(refused.retry_after, now.until(day_end));
        assert_eq!(admit(&usage, &caps, 3, now).unwrap().day.counts.spend, 10);
    }

    #[test]
    fn a_send_given_back_frees_its_place_in_its_own_period_only() {
        let caps = caps(2);
        let now = HOUR_START.plus_secs(10);
        let usage = admit(&TenantUsage::default(), &caps, 5, now).unwrap();
        let usage = admit(&usage, &caps, 5, now).unwrap();
        assert!(admit(&usage, &caps, 5, now).is_err());
        let back = give_back(&usage, 5, now);
        assert_eq!(back.hour.counts.sends, 1);
        assert_eq!(back.day.counts.spend, 5);
        assert!(admit(&back, &caps, 5, now).is_ok());
        // Taken in an hour that has ended: that hour's count stays, today's goes down.
        let next_hour = admit(&usage, &caps, 5, HOUR_START.plus_secs(3600)).unwrap();
        let back = give_back(&next_hour, 5, now);
        assert_eq!(back.hour.counts.sends, 1);
        assert_eq!(back.day.counts.sends, 2);
    }

    #[test]
    fn the_table_counts_only_tenants_with_caps_at_their_price() {
        let mut tenants = BTreeMap::new();
        tenants.insert(
            "capped".to_owned(),
            TenantSettings {
                spend_per_day: Some(100),
                ..TenantSettings::default()
            },
        );
        tenants.insert("free".to_owned(), TenantSettings::default());
        let pricing = PricingSettings {
            sms_default: 7,
            ..PricingSettings::default()
        };
        let table = CapTable::from_settings(&tenants, &pricing);
        let to = Destination::parse(Channel::Sms, "+4915112345678").unwrap();
        assert_eq!(table.charge("capped", Channel::Sms, &to), Some(7));
        assert_eq!(table.charge("free", Channel::Sms, &to), None);
        assert_eq!(table.charge("unknown", Channel::Sms, &to), None);
        assert_eq!(table.caps("capped").spend_per_day, Some(100));
    }

    #[test]
    fn no_caps_admit_everything() {
        let usage = TenantUsage::default();
        assert!(!Caps::default().any());
        assert!(admit(&usage, &Caps::default(), 1_000, HOUR_START).is_ok());
    }
}
