//! The authentication methods policy (Graph's `authenticationMethodsPolicy`): which users may
//! register and use each method Keyward has, and the registration campaign that nudges users
//! without an authenticator app to set one up at sign-in.
//!
//! Targets name users or groups (direct members; `all_users` is every user). A user may use a
//! method when the method is enabled, an include target names them and no exclude target does.

use time::{Duration, OffsetDateTime};

use crate::ids::ObjectId;

/// The group id that stands for every user.
pub const ALL_USERS: &str = "all_users";
/// The most targets one list may hold.
pub const MAX_TARGETS: usize = 50;
/// Skips of the registration campaign before registration is required (when the campaign
/// enforces it), as Entra.
pub const CAMPAIGN_SNOOZES: i64 = 3;

/// Whom a target names: `user` or `group` (Graph's authenticationMethodTargetType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetType {
    User,
    Group,
}

impl TargetType {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::User => "user",
            TargetType::Group => "group",
        }
    }

    pub fn parse(text: &str) -> Option<TargetType> {
        match text {
            "user" => Some(TargetType::User),
            "group" => Some(TargetType::Group),
            _ => None,
        }
    }
}

/// One include or exclude target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub target_type: TargetType,
    /// A user or group object id, or [`ALL_USERS`] (a group).
    pub id: String,
}

impl Target {
    /// The `all_users` group.
    pub fn all_users() -> Target {
        Target { target_type: TargetType::Group, id: ALL_USERS.into() }
    }

    /// Checks the id: `all_users` (only as a group) or an object id, in canonical form.
    pub fn checked(target_type: TargetType, id: &str) -> Result<Target, String> {
        if target_type == TargetType::Group && id.eq_ignore_ascii_case(ALL_USERS) {
            return Ok(Target::all_users());
        }
        let id = ObjectId::parse(id).ok_or_else(|| {
            format!("Target id '{id}' is neither a user or group object id nor 'all_users' (a group).")
        })?;
        Ok(Target { target_type, id: id.to_string() })
    }

    /// The group this target names, other than `all_users`.
    pub fn group(&self) -> Option<&str> {
        (self.target_type == TargetType::Group && self.id != ALL_USERS).then_some(self.id.as_str())
    }

    fn names(&self, user: &str, is_member: &impl Fn(&str) -> bool) -> bool {
        match self.target_type {
            TargetType::User => self.id.eq_ignore_ascii_case(user),
            TargetType::Group => self.id == ALL_USERS || is_member(&self.id),
        }
    }
}

/// Whom a method (or the campaign) applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    pub include: Vec<Target>,
    pub exclude: Vec<Target>,
}

impl Targets {
    /// Every user.
    pub fn everyone() -> Targets {
        Targets { include: vec![Target::all_users()], exclude: Vec::new() }
    }

    /// Whether the targets name `user`: an include target does and no exclude target does.
    /// `is_member` answers direct membership of a group.
    pub fn apply_to(&self, user: &str, is_member: impl Fn(&str) -> bool) -> bool {
        self.include.iter().any(|it| it.names(user, &is_member))
            && !self.exclude.iter().any(|it| it.names(user, &is_member))
    }

    /// The groups (other than `all_users`) the targets name.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.include.iter().chain(&self.exclude).filter_map(Target::group)
    }

    /// Checks the list sizes.
    pub fn validate(&self) -> Result<(), String> {
        if self.include.len() > MAX_TARGETS || self.exclude.len() > MAX_TARGETS {
            return Err(format!(
                "A method's includeTargets and excludeTargets hold at most {MAX_TARGETS} targets each."
            ));
        }
        Ok(())
    }
}

/// A method's configuration: on or off, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodConfig {
    pub is_enabled: bool,
    pub targets: Targets,
}

impl MethodConfig {
    /// On, for every user.
    pub fn everyone() -> MethodConfig {
        MethodConfig { is_enabled: true, targets: Targets::everyone() }
    }

    /// Whether `user` may register and use the method.
    pub fn allows(&self, user: &str, is_member: impl Fn(&str) -> bool) -> bool {
        self.is_enabled && self.targets.apply_to(user, is_member)
    }
}

/// The registration campaign's state (Graph's advancedConfigState); `default` is Microsoft's
/// default, off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignState {
    Default,
    Enabled,
    Disabled,
}

impl CampaignState {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Default => "default",
            CampaignState::Enabled => "enabled",
            CampaignState::Disabled => "disabled",
        }
    }

    pub fn parse(text: &str) -> Option<CampaignState> {
        match text {
            "default" => Some(CampaignState::Default),
            "enabled" => Some(CampaignState::Enabled),
            "disabled" => Some(CampaignState::Disabled),
            _ => None,
        }
    }
}

/// The registration campaign (Graph's `authenticationMethodsRegistrationCampaign`): after a
/// successful sign-in, users it targets who have no authenticator app are asked to set one up.
/// They may skip it; the prompt returns after `snooze_days` (0: at every sign-in), and after
/// [`CAMPAIGN_SNOOZES`] skips it can no longer be skipped when `enforce_after_snoozes` is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub state: CampaignState,
    pub snooze_days: i64,
    pub enforce_after_snoozes: bool,
    pub targets: Targets,
}

impl Default for Campaign {
    fn default() -> Campaign {
        Campaign {
            state: CampaignState::Default,
            snooze_days: 1,
            enforce_after_snoozes: true,
            targets: Targets::everyone(),
        }
    }
}

/// The most AAGUIDs a key restriction lists.
pub const MAX_AAGUIDS: usize = 500;

/// Graph's `fido2KeyRestrictions`: while enforced, only the listed authenticator models may
/// register and sign in (`allow`), or all but them (`block`). Without attestation the AAGUID is
/// what the authenticator says it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRestrictions {
    pub is_enforced: bool,
    /// `enforcementType`: `allow` (true) or `block` (false, the default).
    pub allow: bool,
    /// Lower-case AAGUIDs.
    pub aaguids: Vec<String>,
}

impl KeyRestrictions {
    /// Whether an authenticator of this model may be used.
    pub fn permits(&self, aaguid: &str) -> bool {
        if !self.is_enforced {
            return true;
        }
        let listed = self.aaguids.iter().any(|it| it.eq_ignore_ascii_case(aaguid));
        listed == self.allow
    }

    /// An enforced allow list must name a model (otherwise no passkey could be used), and a list
    /// holds at most [`MAX_AAGUIDS`].
    pub fn validate(&self) -> Result<(), String> {
        if self.aaguids.len() > MAX_AAGUIDS {
            return Err(format!("keyRestrictions.aaGuids may list at most {MAX_AAGUIDS} AAGUIDs."));
        }
        if self.is_enforced && self.allow && self.aaguids.is_empty() {
            return Err("keyRestrictions would allow no authenticator: list the AAGUIDs to allow, or use \
                        enforcementType 'block'."
                .into());
        }
        Ok(())
    }
}

/// The tenant's methods policy. The Temporary Access Pass's own settings stay in
/// [`crate::signin::TapPolicy`]; its targets are here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodsPolicy {
    pub tap_targets: Targets,
    pub software_oath: MethodConfig,
    pub email: MethodConfig,
    /// Passkeys: on and for whom, and whether users (and administrators, through Graph) may
    /// register them (`isSelfServiceRegistrationAllowed`).
    pub fido2: MethodConfig,
    pub fido2_registration: bool,
    /// Which authenticator models (AAGUIDs) may register and sign in (`keyRestrictions`).
    pub fido2_keys: KeyRestrictions,
    /// `isAttestationEnforced`: a passkey registers only with an attestation that chains to a
    /// root the administrator trusts.
    pub fido2_attestation: bool,
    pub campaign: Campaign,
    /// When it last changed (`lastModifiedDateTime`); `None` while it is the default.
    pub last_modified: Option<OffsetDateTime>,
}

impl Default for MethodsPolicy {
    fn default() -> MethodsPolicy {
        MethodsPolicy {
            tap_targets: Targets::everyone(),
            software_oath: MethodConfig::everyone(),
            email: MethodConfig::everyone(),
            // Off until an administrator turns passkeys on (Entra's documented default).
            fido2: MethodConfig { is_enabled: false, targets: Targets::everyone() },
            fido2_registration: true,
            fido2_keys: KeyRestrictions::default(),
            fido2_attestation: false,
            campaign: Campaign::default(),
            last_modified: None,
        }
    }
}

impl MethodsPolicy {
    /// Checks the bounds: target lists of at most [`MAX_TARGETS`], snoozes of 0–14 days.
    pub fn validate(&self) -> Result<(), String> {
        for targets in [
            &self.tap_targets,
            &self.software_oath.targets,
            &self.email.targets,
            &self.fido2.targets,
            &self.campaign.targets,
        ] {
            targets.validate()?;
        }
        self.fido2_keys.validate()?;
        if !(0..=14).contains(&self.campaign.snooze_days) {
            return Err("'snoozeDurationInDays' must be between 0 and 14.".into());
        }
        Ok(())
    }

    /// Every group any target names (other than `all_users`), once each.
    pub fn groups(&self) -> Vec<&str> {
        let mut groups: Vec<&str> = self
            .tap_targets
            .groups()
            .chain(self.software_oath.targets.groups())
            .chain(self.email.targets.groups())
            .chain(self.fido2.targets.groups())
            .chain(self.campaign.targets.groups())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }
}

/// A user's skips of the registration campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CampaignSnooze {
    pub count: i64,
    pub until: Option<OffsetDateTime>,
}

impl CampaignSnooze {
    /// After one more skip at `now`.
    pub fn after_skip(self, campaign: &Campaign, now: OffsetDateTime) -> CampaignSnooze {
        CampaignSnooze { count: self.count + 1, until: Some(now + Duration::days(campaign.snooze_days)) }
    }
}

/// What the campaign asks of a user after a successful sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nudge {
    /// Nothing: go on.
    None,
    /// Ask to set up an authenticator app; `can_skip` says whether "Not now" is offered.
    Register { can_skip: bool },
}

/// Whether the campaign asks `user` to register an authenticator app now: it is enabled and
/// targets them, they have none and may register one, and they have not skipped it recently.
pub fn campaign_nudge(
    campaign: &Campaign,
    is_targeted: bool,
    has_authenticator: bool,
    may_register: bool,
    snooze: CampaignSnooze,
    now: OffsetDateTime,
) -> Nudge {
    if campaign.state != CampaignState::Enabled || !is_targeted || has_authenticator || !may_register {
        return Nudge::None;
    }
    let can_skip = !campaign.enforce_after_snoozes || snooze.count < CAMPAIGN_SNOOZES;
    if can_skip && snooze.until.is_some_and(|until| until > now) {
        return Nudge::None;
    }
    Nudge::Register { can_skip }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_restrictions_allow_or_block_models() {
        let model = "11111111-1111-1111-1111-111111111111";
        let off = KeyRestrictions { is_enforced: false, allow: true, aaguids: vec![] };
        assert!(off.permits(model) && off.validate().is_ok());
        let block = KeyRestrictions { is_enforced: true, allow: false, aaguids: vec![model.into()] };
        assert!(!block.permits(&model.to_uppercase()) && block.permits("22222222-2222-2222-2222-222222222222"));
        let allow = KeyRestrictions { is_enforced: true, allow: true, aaguids: vec![model.into()] };
        assert!(allow.permits(model) && !allow.permits("22222222-2222-2222-2222-222222222222"));
        assert!(KeyRestrictions { aaguids: vec![], ..allow }.validate().is_err(), "an empty allow list");
        let many = KeyRestrictions { aaguids: vec![model.into(); MAX_AAGUIDS + 1], ..block };
        assert!(many.validate().is_err());
    }
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);
    const USER: &str = "11111111-1111-1111-1111-111111111111";
    const GROUP: &str = "22222222-2222-2222-2222-222222222222";

    fn targets(include: &[Target], exclude: &[Target]) -> Targets {
        Targets { include: include.to_vec(), exclude: exclude.to_vec() }
    }

    #[test]
    fn targets_include_then_exclude() {
        let group = Target::checked(TargetType::Group, GROUP).expect("valid");
        let user = Target::checked(TargetType::User, USER).expect("valid");
        let member = |id: &str| id == GROUP;
        let nobody = |_: &str| false;
        assert!(Targets::everyone().apply_to(USER, nobody));
        assert!(targets(std::slice::from_ref(&group), &[]).apply_to(USER, member));
        assert!(!targets(std::slice::from_ref(&group), &[]).apply_to(USER, nobody));
        assert!(!targets(&[Target::all_users()], std::slice::from_ref(&group)).apply_to(USER, member));
        assert!(!targets(&[Target::all_users()], std::slice::from_ref(&user)).apply_to(USER, nobody));
        assert!(targets(std::slice::from_ref(&user), &[]).apply_to(&USER.to_uppercase(), nobody));
        assert!(!targets(&[], &[]).apply_to(USER, nobody), "no include target names nobody");
    }

    #[test]
    fn target_ids_are_checked() {
        assert_eq!(Target::checked(TargetType::Group, "ALL_USERS"), Ok(Target::all_users()));
        assert!(Target::checked(TargetType::User, ALL_USERS).is_err(), "all_users is a group");
        assert!(Target::checked(TargetType::Group, "sales").is_err());
        let upper = Target::checked(TargetType::Group, &GROUP.to_uppercase()).expect("valid");
        assert_eq!(upper.id, GROUP, "stored in canonical form");
    }

    #[test]
    fn policy_bounds_and_groups() {
        let mut policy = MethodsPolicy::default();
        assert_eq!(policy.validate(), Ok(()));
        assert!(policy.groups().is_empty());
        let group = Target::checked(TargetType::Group, GROUP).expect("valid");
        policy.email.targets.include = vec![group.clone()];
        policy.campaign.targets.exclude = vec![group.clone()];
        assert_eq!(policy.groups(), vec![GROUP]);
        policy.campaign.snooze_days = 15;
        assert!(policy.validate().is_err());
        policy.campaign.snooze_days = 0;
        policy.tap_targets.include = vec![group; MAX_TARGETS + 1];
        assert!(policy.validate().is_err());
    }

    #[test]
    fn the_campaign_nudges_until_registration_and_counts_skips() {
        let on = Campaign { state: CampaignState::Enabled, ..Campaign::default() };
        let none = CampaignSnooze::default();
        assert_eq!(campaign_nudge(&Campaign::default(), true, false, true, none, NOW), Nudge::None, "default is off");
        assert_eq!(campaign_nudge(&on, true, false, true, none, NOW), Nudge::Register { can_skip: true });
        assert_eq!(campaign_nudge(&on, false, false, true, none, NOW), Nudge::None, "not targeted");
        assert_eq!(campaign_nudge(&on, true, true, true, none, NOW), Nudge::None, "has an app");
        assert_eq!(campaign_nudge(&on, true, false, false, none, NOW), Nudge::None, "may not register one");
        let skipped = none.after_skip(&on, NOW);
        assert_eq!(skipped, CampaignSnooze { count: 1, until: Some(NOW + Duration::days(1)) });
        assert_eq!(campaign_nudge(&on, true, false, true, skipped, NOW + Duration::hours(23)), Nudge::None);
        assert_eq!(
            campaign_nudge(&on, true, false, true, skipped, NOW + Duration::days(1)),
            Nudge::Register { can_skip: true }
        );
        let third = skipped.after_skip(&on, NOW).after_skip(&on, NOW);
        assert_eq!(campaign_nudge(&on, true, false, true, third, NOW), Nudge::Register { can_skip: false });
        let forever = Campaign { enforce_after_snoozes: false, ..on.clone() };
        assert_eq!(campaign_nudge(&forever, true, false, true, third, NOW), Nudge::None, "snoozed");
        let every_time = Campaign { snooze_days: 0, ..on };
        let once = none.after_skip(&every_time, NOW);
        assert_eq!(campaign_nudge(&every_time, true, false, true, once, NOW), Nudge::Register { can_skip: true });
    }
}
