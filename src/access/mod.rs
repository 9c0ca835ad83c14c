//! Access control: what each tenant may send (channels, countries, number types), its send
//! and spend caps, and the operator's blocklist; decided by pure functions, applied by the
//! `Gate` inside the IssuanceActor.

pub mod blocklist;
pub mod caps;
pub mod gate;
pub mod permissions;
pub mod settings;

pub use blocklist::BlockEntry;
pub use caps::TenantUsage;
pub use gate::{AccessDenied, AdminError, BlocklistAction, BlocklistAnswer, Gate};
pub use settings::{validate_tenants, PricingSettings, TenantSettings, Tenants};
