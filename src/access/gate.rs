//! The Gate the IssuanceActor asks before each send: tenant permissions and the blocklist;
//! and the blocklist edits of admin tenants. (The send and spend caps are counted for the
//! whole cluster, see `crate::cluster::counters`.)

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::blocklist::{self, BlockEntry, Blocklist, InvalidEntry};
use super::caps::CapReached;
use super::permissions::{self, NotPermitted, Permissions};
use super::settings::TenantSettings;
use crate::domain::channel::AddressKind;
use crate::domain::{Channel, Destination, PlannedStep, Timestamp};
use crate::store::{ListsWatch, Store, StoreError};

/// What one tenant may do, resolved from its settings.
#[derive(Debug, Clone, Default)]
struct TenantAccess {
    permissions: Permissions,
    admin: bool,
    resend_keeps_code: Option<bool>,
    default_workflow: Option<Vec<PlannedStep>>,
}

impl TenantAccess {
    fn from_settings(settings: &TenantSettings) -> Self {
        TenantAccess {
            permissions: Permissions::from_settings(settings),
            admin: settings.admin,
            resend_keeps_code: settings.resend_keeps_code,
            // Refused at start when it is not well formed (`validate_tenants`).
            default_workflow: settings.default_workflow().ok().flatten(),
        }
    }
}

/// Why a send was refused (API: 403 `destination_blocked` or 429 `rate_limited`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessDenied {
    #[error("{}", .refusal.message(.tenant))]
    NotPermitted {
        tenant: String,
        refusal: NotPermitted,
    },
    #[error("This number is on the operator's blocklist, so otpd does not send to it. If you think it should not be, contact the operator of this otpd.")]
    Blocklisted,
    #[error("{}", .cap.message(.tenant))]
    CapReached { tenant: String, cap: CapReached },
}

impl AccessDenied {
    /// The API error code.
    pub fn code(&self) -> &'static str {
        match self {
            AccessDenied::NotPermitted { .. } | AccessDenied::Blocklisted => "destination_blocked",
            AccessDenied::CapReached { .. } => "rate_limited",
        }
    }

    /// A short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AccessDenied::NotPermitted { .. } => "not_permitted",
            AccessDenied::Blocklisted => "blocklisted",
            AccessDenied::CapReached { .. } => "tenant_cap",
        }
    }

    /// How long to wait before a retry can succeed, where waiting helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AccessDenied::CapReached { cap, .. } => Some(cap.retry_after),
            _ => None,
        }
    }
}

/// Why an admin request was refused.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum AdminError {
    #[error("Tenant {0} may not use the admin routes; set tenants.{0}.admin = true to allow its keys to.")]
    Forbidden(String),
    #[error(transparent)]
    Invalid(#[from] InvalidEntry),
    #[error("There is no blocklist entry '{0}'; GET /v1/admin/blocklist lists the entries.")]
    NotFound(String),
    #[error("No fraud block of prefix '{0}' is in force; GET /v1/fraud/blocks lists them.")]
    NoFraudBlock(String),
    #[error("The blocklist holds the most entries allowed ({}); remove some, or block a shorter prefix that covers several.", blocklist::MAX_ENTRIES)]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An edit of (or a look at) the blocklist.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BlocklistAction {
    List,
    Add { entry: String, note: Option<String> },
    Remove { entry: String },
}

/// What a blocklist action answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BlocklistAnswer {
    Entries(Vec<BlockEntry>),
    Added { entry: BlockEntry, created: bool },
    Removed(BlockEntry),
}

impl BlocklistAnswer {
    /// The edit this answer reports ("added", "removed"), or `None` for a listing.
    pub fn edit(&self) -> Option<&'static str> {
        match self {
            BlocklistAnswer::Entries(_) => None,
            BlocklistAnswer::Added { .. } => Some("added"),
            BlocklistAnswer::Removed(_) => Some("removed"),
        }
    }
}

/// Tenant permissions and the blocklist, as the IssuanceActor (the blocklist's single
/// writer) applies them.
pub struct Gate {
    store: Arc<dyn Store>,
    tenants: HashMap<String, TenantAccess>,
    /// For tenants with no settings (keys only in the keys file): everything allowed.
    unconfigured: TenantAccess,
    blocklist: Blocklist,
    /// Tells when another node's blocklist edit reached the store, and the generation
    /// `blocklist` was read at.
    lists: Arc<ListsWatch>,
    read_at: u64,
}

impl Gate {
    /// Reads the tenants' settings and the stored blocklist, which it reads again when
    /// `lists` tells of another node's edit.
    pub fn load(
        tenants: &BTreeMap<String, TenantSettings>,
        store: Arc<dyn Store>,
        lists: Arc<ListsWatch>,
    ) -> Result<Self, StoreError> {
        let read_at = lists.generation();
        let blocklist = Blocklist::new(store.blocklist()?);
        Ok(Gate {
            tenants: tenants
                .iter()
                .map(|(name, tenant)| (name.clone(), TenantAccess::from_settings(tenant)))
                .collect(),
            unconfigured: TenantAccess::default(),
            blocklist,
            lists,
            read_at,
            store,
        })
    }

    fn tenant(&self, name: &str) -> &TenantAccess {
        self.tenants.get(name).unwrap_or(&self.unconfigured)
    }

    /// Reads the blocklist again if another node has edited it since it was read.
    fn refresh(&mut self) -> Result<(), StoreError> {
        let generation = self.lists.generation();
        if generation != self.read_at {
            self.blocklist = Blocklist::new(self.store.blocklist()?);
            self.read_at = generation;
        }
        Ok(())
    }

    /// Whether `tenant` may send on `channel` to `destination`.
    pub fn admit(
        &mut self,
        tenant: &str,
        channel: Channel,
        destination: &Destination,
    ) -> Result<(), AdmitError> {
        self.refresh()?;
        let access = self.tenant(tenant);
        permissions::check(
            &access.permissions,
            channel,
            destination,
            permissions::number_type,
        )
        .map_err(|refusal| AccessDenied::NotPermitted {
            tenant: tenant.to_owned(),
            refusal,
        })?;
        if channel.address_kind() == AddressKind::Phone
            && self.blocklist.blocks(destination.as_str())
        {
            return Err(AccessDenied::Blocklisted.into());
        }
        Ok(())
    }

    /// Whether `tenant`'s resends send the same code, if its settings say
    /// (`tenants.<name>.resend_keeps_code`).
    pub fn resend_keeps_code(&self, tenant: &str) -> Option<bool> {
        self.tenant(tenant).resend_keeps_code
    }

    /// The workflow `tenant`'s creates follow when they give none and name its first
    /// channel (`tenants.<name>.workflow`).
    pub fn default_workflow(&self, tenant: &str) -> Option<&[PlannedStep]> {
        self.tenant(tenant).default_workflow.as_deref()
    }

    /// Refuses tenants that may not use the admin routes.
    pub fn require_admin(&self, by: &str) -> Result<(), AdminError> {
        if self.tenant(by).admin {
            Ok(())
        } else {
            Err(AdminError::Forbidden(by.to_owned()))
        }
    }

    /// Applies a blocklist action of tenant `by` (which must be an admin).
    pub fn blocklist(
        &mut self,
        by: &str,
        action: BlocklistAction,
        now: Timestamp,
    ) -> Result<BlocklistAnswer, AdminError> {
        self.require_admin(by)?;
        self.refresh()?;
        match action {
            BlocklistAction::List => Ok(BlocklistAnswer::Entries(
                self.blocklist.entries().cloned().collect(),
            )),
            BlocklistAction::Add { entry, note } => {
                let entry = blocklist::validate_entry(&entry)?;
                blocklist::validate_note(note.as_deref())?;
                let created = !self.blocklist.contains(&entry);
                if created && self.blocklist.len() >= blocklist::MAX_ENTRIES {
                    return Err(AdminError::Full);
                }
                let record = BlockEntry {
                    entry,
                    note,
                    added_at: now,
                    added_by: by.to_owned(),
                };
                self.store.save_block_entry(&record)?;
                self.blocklist.insert(record.clone());
                Ok(BlocklistAnswer::Added {
                    entry: record,
                    created,
                })
            }
            BlocklistAction::Remove { entry } => {
                if !self.blocklist.contains(&entry) {
                    return Err(AdminError::NotFound(entry));
                }
                self.store.remove_block_entry(&entry)?;
                let removed = self
                    .blocklist
                    .remove(&entry)
                    .ok_or(AdminError::NotFound(entry))?;
                Ok(BlocklistAnswer::Removed(removed))
            }
        }
    }
}

/// Why `Gate::admit` said no: a refusal, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Denied(#[from] AccessDenied),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_additions_and_removals_are_edits() {
        let entry = BlockEntry {
            entry: "+4915".into(),
            note: None,
            added_at: Timestamp(0),
            added_by: "ops".into(),
        };
        let added = BlocklistAnswer::Added {
            entry: entry.clone(),
            created: true,
        };
        assert_eq!(added.edit(), Some("added"));
        assert_eq!(
            BlocklistAnswer::Removed(entry.clone()).edit(),
            Some("removed")
        );
        assert_eq!(BlocklistAnswer::Entries(vec![entry]).edit(), None);
    }

    #[test]
    fn the_blocklist_holds_for_every_channel_to_a_phone() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::SledStore::open(
                dir.path(),
                crate::store::SledOptions::uncompressed(1 << 20),
                Duration::from_secs(3600),
            )
            .unwrap(),
        );
        let tenants = BTreeMap::from([
            (
                "ops".to_owned(),
                TenantSettings {
                    admin: true,
                    ..TenantSettings::default()
                },
            ),
            (
                "acme".to_owned(),
                TenantSettings {
                    channels: Channel::all().collect(),
                    ..TenantSettings::default()
                },
            ),
        ]);
        let mut gate = Gate::load(&tenants, store, Arc::default()).unwrap();
        let add = BlocklistAction::Add {
            entry: "+4915112".into(),
            note: None,
        };
        gate.blocklist("ops", add, Timestamp(0)).unwrap();
        for channel in Channel::all().filter(|c| c.address_kind() == AddressKind::Phone) {
            let blocked = Destination::parse(channel, "+4915112345678").unwrap();
            assert!(
                matches!(
                    gate.admit("acme", channel, &blocked),
                    Err(AdmitError::Denied(AccessDenied::Blocklisted))
                ),
                "{channel}"
            );
            let other = Destination::parse(channel, "+33612345678").unwrap();
            assert!(gate.admit("acme", channel, &other).is_ok(), "{channel}");
        }
    }
}
