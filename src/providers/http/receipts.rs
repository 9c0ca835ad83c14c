//! otpd's own receipt format (`message_id`, `status`, optional `error_code`, as JSON), which a
//! generic HTTP gateway posts with a shared secret, and the sandbox with a tenant API key.

use secrecy::SecretString;

use crate::providers::receipts::{
    check_shared_secret, field, params_from_json, Receipt, ReceiptCall, ReceiptError, ReceiptHead,
    ReceiptReader, ReceiptStatus,
};

/// How a caller of otpd's receipt format proves itself.
pub enum GenericAuth {
    /// `receipt_secrets.<id>`, in the URL or a header.
    SharedSecret(Option<SecretString>),
    /// A tenant API key (the sandbox, for development).
    TenantKey,
}

/// Reads otpd's own receipt format.
pub struct GenericReceipts {
    pub auth: GenericAuth,
}

impl ReceiptReader for GenericReceipts {
    fn admit(&self, head: &ReceiptHead<'_>) -> Result<(), ReceiptError> {
        match &self.auth {
            GenericAuth::SharedSecret(secret) => check_shared_secret(secret.as_ref(), head),
            // The API checks the tenant key before anything else.
            GenericAuth::TenantKey => Ok(()),
        }
    }

    fn read(&self, call: &ReceiptCall<'_>) -> Result<Vec<Receipt>, ReceiptError> {
        parse_generic(&params_from_json(call.body)?).map(|receipt| vec![receipt])
    }

    fn needs_tenant_key(&self) -> bool {
        matches!(self.auth, GenericAuth::TenantKey)
    }
}

/// Reads otpd's own receipt format, for the generic HTTP provider and the sandbox:
/// `message_id`, `status` (delivered, failed or pending), optional `error_code`.
pub fn parse_generic(params: &[(String, String)]) -> Result<Receipt, ReceiptError> {
    let id = field(params, "message_id").ok_or(ReceiptError::MissingField("message_id"))?;
    let state = field(params, "status").ok_or(ReceiptError::MissingField("status"))?;
    let status = match state {
        "delivered" => ReceiptStatus::Delivered,
        "failed" => ReceiptStatus::Failed,
        "pending" => ReceiptStatus::Pending,
        other => return Err(ReceiptError::UnknownStatus(other.to_owned())),
    };
    Ok(Receipt {
        provider_message_id: id.to_owned(),
        status,
        error_code: field(params, "error_code").map(str::to_owned),
    })
}
