//! The retail back office: the "existing system" that Choreo's agents act on through tools.
//!
//! One SQLite file holds customers, products and stock, orders and their items, charges,
//! refunds, shipments and stock reservations. It is loaded from a [`DataSet`]: the seeded support
//! cases in `data/retail.json` (embedded, see [`DataSet::seeded`]) or synthetic ones for load
//! tests ([`DataSet::synthetic`]).
//!
//! - Reads that touch a customer's resource take the authenticated customer id and refuse
//!   another customer's order or charge ([`BackOfficeError::NotOwned`]).
//! - Effects (refund, shipment, reservation) take an idempotency key: the same key again returns
//!   the first result and changes nothing, as a payment provider's `Idempotency-Key` does.
//! - Money is integer minor units beside a currency; answers are JSON-ready views.
//! - Shipments and captured charges write their event (`OrderShipped`, `ChargeCaptured`) into a
//!   transactional outbox in the same transaction; see [`outbox`] for the table, the
//!   contract with the relay in `choreo-producers`.
//!
//! ```
//! use chrono::NaiveDate;
//! use choreo_backoffice::{BackOffice, ServiceLevel};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let office = BackOffice::open_seeded(&dir.path().join("retail.db"))?;
//!
//! // Case 1: charged twice, and the speaker never shipped.
//! let charges = office.list_charges("c-1001", "o-1001")?;
//! assert_eq!(charges.charges[1].duplicate_of.as_deref(), Some("ch-1001-a"));
//! let refund = office.refund_charge("c-1001", "ch-1001-b", None, "duplicate charge", "case-1/refund")?;
//! assert_eq!(refund.amount_minor, 20_800);
//!
//! let today = NaiveDate::from_ymd_opt(2026, 12, 3).ok_or("bad date")?;
//! let parcel =
//!     office.create_shipment("c-1001", "o-1001", "SKU-SPEAKER-02", 1, ServiceLevel::NextDay, today, "case-1/ship")?;
//! assert_eq!(parcel.estimated_delivery, today.succ_opt().ok_or("bad date")?);
//!
//! // Another customer's order is refused.
//! assert!(office.get_order("c-1001", "o-1005").is_err());
//! # Ok(())
//! # }
//! ```

mod capture;
mod data;
mod effects;
mod error;
pub mod outbox;
mod reads;
mod store;
mod views;

pub use data::{
    ChargeRecord, CustomerRecord, DataSet, ItemRecord, OrderRecord, ProductRecord, RefundRecord, SYNTHETIC_HEADPHONES,
    SYNTHETIC_SPEAKER, ShipmentRecord,
};
pub use error::BackOfficeError;
pub use outbox::{OUTBOX_AUTH_ID, OUTBOX_SOURCE, OutboxEntry};
pub use store::BackOffice;
pub use views::{
    ChargeView, ChargesView, OrderItemView, OrderView, ProductView, RefundView, ReservationView, ServiceLevel,
    ShipmentView, StockView,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_office_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<BackOffice>();
    }
}
