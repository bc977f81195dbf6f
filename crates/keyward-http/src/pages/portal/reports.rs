//! Authentication methods activity, as Entra's report: registration coverage and the service
//! desk's daily activity, drawn server-side as SVG bar charts, each with a table that says the
//! same in text.

use keyward_app::RegistrationOverview;
use keyward_core::registration::DayActivity;

use super::*;

/// Days of activity the page shows.
const DAYS: u16 = 30;
/// Width in the SVG's units of the longest horizontal bar.
const BAR_WIDTH: u64 = 360;
/// Height in the SVG's units of the tallest daily column.
const COLUMN_HEIGHT: u64 = 120;

/// One bar of a horizontal chart: its label, value, share of the whole (percent), length and
/// vertical position.
#[derive(Debug)]
struct Bar {
    label: &'static str,
    value: i64,
    percent: i64,
    width: u64,
    y: u64,
}

/// One day of the activity chart: the date, the three counts and their columns' heights.
#[derive(Debug)]
struct Day {
    date: String,
    x: u64,
    counts: [u32; 3],
    heights: [u64; 3],
}

#[derive(Debug, Template)]
#[template(path = "portal/reports.html")]
struct ReportsPage {
    title: &'static str,
    tenant: String,
    header: Header,
    /// Users, capability bars, method bars and administrators without MFA (`None` when the
    /// caller's roles read users without an admin role only); or why not shown.
    registration: Result<Registration, String>,
    /// The days and whether older records were cut off; or why not shown.
    activity: Result<(Vec<Day>, bool), String>,
    days: u16,
}

fn bars(rows: &[(&'static str, i64)], total: i64) -> Vec<Bar> {
    let longest = rows.iter().map(|it| it.1).max().unwrap_or(0).max(1);
    rows.iter()
        .enumerate()
        .map(|(index, (label, value))| Bar {
            label,
            value: *value,
            percent: if total > 0 { value * 100 / total } else { 0 },
            width: u64::try_from(*value).unwrap_or(0) * BAR_WIDTH / u64::try_from(longest).unwrap_or(1),
            y: 24 * index as u64,
        })
        .collect()
}

/// The registration part: users, capability bars, method bars, administrators without MFA, and
/// when the figures were counted.
type Registration = (i64, Vec<Bar>, Vec<Bar>, Option<i64>, String);

fn registration(overview: &RegistrationOverview) -> Registration {
    let (all, admins) = (&overview.all, overview.admins.as_ref());
    let capability = [
        ("MFA registered", all.mfa_registered),
        ("MFA capable", all.mfa_capable),
        ("Passwordless capable", all.passwordless_capable),
        ("Self-service reset registered", all.sspr_registered),
    ];
    let labels = |method: &str| match method {
        "password" => "Password",
        "email" => "Email",
        "mobilePhone" => "Mobile phone",
        "alternateMobilePhone" => "Alternate mobile phone",
        "officePhone" => "Office phone",
        "passKeyDeviceBound" => "Passkey (device-bound)",
        "passKeySynced" => "Passkey (synced)",
        _ => "Authenticator app",
    };
    let methods: Vec<(&'static str, i64)> = all.by_method().iter().map(|(name, n)| (labels(name), *n)).collect();
    let without_mfa = admins.map(|it| it.total - it.mfa_capable);
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let as_of = overview.as_of.format(&format).unwrap_or_default();
    (all.total, bars(&capability, all.total), bars(&methods, all.total), without_mfa, as_of)
}

fn days(activity: &[DayActivity]) -> Vec<Day> {
    let highest = activity.iter().flat_map(|it| [it.resets, it.passes, it.refused]).max().unwrap_or(0).max(1);
    activity
        .iter()
        .enumerate()
        .map(|(index, it)| {
            let counts = [it.resets, it.passes, it.refused];
            Day {
                date: it.day.to_string(),
                x: 20 * index as u64,
                counts,
                heights: counts.map(|n| u64::from(n) * COLUMN_HEIGHT / u64::from(highest)),
            }
        })
        .collect()
}

/// `GET /{tenant}/admin/reports`: registration coverage (every reader of the registration
/// report; counted again only when out of date, see `App::registration_overview`) and the last 30
/// days of resets, passes and refusals (readers of the audit log).
pub(in crate::pages) async fn reports(State(state): State<AppState>, Admin { caller, .. }: Admin) -> Response {
    let registration = match state.app.registration_overview(&caller).await {
        Ok(it) => Ok(registration(&it)),
        Err(AppError::Forbidden { .. }) => Err("Your roles do not let you read the registration report.".to_owned()),
        Err(err) => return failure(err),
    };
    let activity = match state.app.daily_activity(&caller, DAYS).await {
        Ok((activity, is_cut)) => Ok((days(&activity), is_cut)),
        Err(AppError::Forbidden { .. }) => {
            Err("Daily activity comes from the audit log, which your roles do not let you read.".to_owned())
        }
        Err(err) => return failure(err),
    };
    let page = ReportsPage {
        title: "Authentication methods activity",
        tenant: caller.tenant.id.to_string(),
        header: Header::of(&caller),
        registration,
        activity,
        days: DAYS,
    };
    html(StatusCode::OK, &page)
}
