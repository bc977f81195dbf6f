//! The stored form of a tenant's authentication methods policy: one JSON document.

use keyward_core::methods_policy::{
    Campaign, CampaignState, KeyRestrictions, MethodConfig, MethodsPolicy, Target, TargetType, Targets,
};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::sql::{fmt_ts, parse_ts};

#[derive(Serialize, Deserialize)]
struct Row {
    tap: TargetsRow,
    software_oath: ConfigRow,
    email: ConfigRow,
    /// Absent in documents written before passkeys: the defaults.
    #[serde(default = "fido2_default")]
    fido2: ConfigRow,
    #[serde(default = "yes")]
    fido2_registration: bool,
    /// Absent in documents written before key restrictions: not enforced.
    #[serde(default)]
    fido2_keys: KeysRow,
    #[serde(default)]
    fido2_attestation: bool,
    campaign: CampaignRow,
    last_modified: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ConfigRow {
    enabled: bool,
    targets: TargetsRow,
}

#[derive(Serialize, Deserialize, Default)]
struct KeysRow {
    enforced: bool,
    allow: bool,
    aaguids: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct CampaignRow {
    state: String,
    snooze_days: i64,
    enforce_after_snoozes: bool,
    targets: TargetsRow,
}

#[derive(Serialize, Deserialize)]
struct TargetsRow {
    include: Vec<(String, String)>,
    exclude: Vec<(String, String)>,
}

fn fido2_default() -> ConfigRow {
    config_row(&MethodsPolicy::default().fido2)
}

fn yes() -> bool {
    true
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Other(format!("corrupt authentication methods policy: {what}"))
}

fn targets_row(targets: &Targets) -> TargetsRow {
    let list = |list: &[Target]| list.iter().map(|it| (it.target_type.as_str().to_owned(), it.id.clone())).collect();
    TargetsRow { include: list(&targets.include), exclude: list(&targets.exclude) }
}

fn targets(row: TargetsRow) -> Result<Targets, StoreError> {
    let list = |list: Vec<(String, String)>| {
        list.into_iter()
            .map(|(kind, id)| {
                let target_type = TargetType::parse(&kind).ok_or_else(|| corrupt("target type"))?;
                Ok(Target { target_type, id })
            })
            .collect::<Result<Vec<_>, StoreError>>()
    };
    Ok(Targets { include: list(row.include)?, exclude: list(row.exclude)? })
}

fn config_row(config: &MethodConfig) -> ConfigRow {
    ConfigRow { enabled: config.is_enabled, targets: targets_row(&config.targets) }
}

fn config(row: ConfigRow) -> Result<MethodConfig, StoreError> {
    Ok(MethodConfig { is_enabled: row.enabled, targets: targets(row.targets)? })
}

/// The document for `policy`.
pub(crate) fn encode(policy: &MethodsPolicy) -> Result<String, StoreError> {
    let row = Row {
        tap: targets_row(&policy.tap_targets),
        software_oath: config_row(&policy.software_oath),
        email: config_row(&policy.email),
        fido2: config_row(&policy.fido2),
        fido2_registration: policy.fido2_registration,
        fido2_keys: KeysRow {
            enforced: policy.fido2_keys.is_enforced,
            allow: policy.fido2_keys.allow,
            aaguids: policy.fido2_keys.aaguids.clone(),
        },
        fido2_attestation: policy.fido2_attestation,
        campaign: CampaignRow {
            state: policy.campaign.state.as_str().to_owned(),
            snooze_days: policy.campaign.snooze_days,
            enforce_after_snoozes: policy.campaign.enforce_after_snoozes,
            targets: targets_row(&policy.campaign.targets),
        },
        last_modified: policy.last_modified.map(fmt_ts),
    };
    serde_json::to_string(&row).map_err(|err| StoreError::Other(err.to_string()))
}

/// The policy a document holds.
pub(crate) fn decode(text: &str) -> Result<MethodsPolicy, StoreError> {
    let row: Row = serde_json::from_str(text).map_err(|err| corrupt(&err.to_string()))?;
    Ok(MethodsPolicy {
        tap_targets: targets(row.tap)?,
        software_oath: config(row.software_oath)?,
        email: config(row.email)?,
        fido2: config(row.fido2)?,
        fido2_registration: row.fido2_registration,
        fido2_keys: KeyRestrictions {
            is_enforced: row.fido2_keys.enforced,
            allow: row.fido2_keys.allow,
            aaguids: row.fido2_keys.aaguids,
        },
        fido2_attestation: row.fido2_attestation,
        campaign: Campaign {
            state: CampaignState::parse(&row.campaign.state).ok_or_else(|| corrupt("campaign state"))?,
            snooze_days: row.campaign.snooze_days,
            enforce_after_snoozes: row.campaign.enforce_after_snoozes,
            targets: targets(row.campaign.targets)?,
        },
        last_modified: row.last_modified.as_deref().map(parse_ts).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_core::methods_policy::CampaignState;

    #[test]
    fn policies_round_trip() {
        let mut policy = MethodsPolicy::default();
        assert_eq!(decode(&encode(&policy).expect("encodes")).expect("decodes"), policy);
        policy.email.is_enabled = false;
        policy.campaign.state = CampaignState::Enabled;
        policy.campaign.targets.exclude =
            vec![Target::checked(TargetType::User, "11111111-1111-1111-1111-111111111111").expect("valid")];
        policy.last_modified = Some(time::macros::datetime!(2026-12-01 12:00 UTC));
        assert_eq!(decode(&encode(&policy).expect("encodes")).expect("decodes"), policy);
        assert!(decode("{}").is_err());
        // A document from before passkeys reads with their defaults.
        let mut old: serde_json::Value = serde_json::from_str(&encode(&policy).expect("encodes")).expect("json");
        old.as_object_mut().expect("object").retain(|key, _| key != "fido2" && key != "fido2_registration");
        let read = decode(&old.to_string()).expect("decodes");
        assert_eq!((read.fido2, read.fido2_registration), (MethodsPolicy::default().fido2, true));
    }
}
