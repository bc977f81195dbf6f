//! Creating and editing users: one form for both, posted with the session's CSRF token. A new
//! user's password is either typed (and checked against the policy) or chosen by Keyward and
//! shown once; an edit changes only the fields that differ, so it needs only their permissions.

use keyward_core::directory::{UserDraft, UserPatch};
use keyward_core::secret::Secret;

use super::users::SecretPage;
use super::*;

/// The longest value a text field takes (Graph's limits are lower for most properties, and the
/// use case checks them).
const MAX_FIELD: usize = 256;

/// The form's fields, as typed (never the password).
#[derive(Debug, Default)]
struct UserFields {
    display_name: String,
    user_principal_name: String,
    given_name: String,
    surname: String,
    job_title: String,
    department: String,
    usage_location: String,
    mobile_phone: String,
    force_change: bool,
    account_enabled: bool,
}

impl UserFields {
    /// The profile's text fields as a form sends them.
    fn encode(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("display_name", &self.display_name),
                ("user_principal_name", &self.user_principal_name),
                ("given_name", &self.given_name),
                ("surname", &self.surname),
                ("job_title", &self.job_title),
                ("department", &self.department),
                ("usage_location", &self.usage_location),
                ("mobile_phone", &self.mobile_phone),
            ])
            .finish()
    }

    fn of(user: &User) -> UserFields {
        let text = |it: &Option<String>| it.clone().unwrap_or_default();
        UserFields {
            display_name: user.display_name.clone(),
            user_principal_name: user.user_principal_name.clone(),
            given_name: text(&user.given_name),
            surname: text(&user.surname),
            job_title: text(&user.job_title),
            department: text(&user.department),
            usage_location: text(&user.usage_location),
            mobile_phone: text(&user.mobile_phone),
            force_change: false,
            account_enabled: user.account_enabled,
        }
    }

    /// The fields as posted, and whether they are acceptable. A field too long or holding control
    /// characters is refused, and shown again cleaned (so what was typed is not lost).
    fn from_form(fields: &HashMap<String, String>) -> (UserFields, Result<(), AppError>) {
        let mut verdict = Ok(());
        let mut text = |name: &str| -> String {
            let value = fields.get(name).map(|it| it.trim()).unwrap_or_default();
            if (value.chars().count() > MAX_FIELD || value.chars().any(char::is_control)) && verdict.is_ok() {
                verdict = Err(AppError::BadRequest(format!(
                    "The field '{name}' is too long or holds control characters: at most {MAX_FIELD} characters."
                )));
            }
            value.chars().filter(|it| !it.is_control()).take(MAX_FIELD).collect()
        };
        let mut form = UserFields {
            display_name: text("display_name"),
            user_principal_name: text("user_principal_name"),
            given_name: text("given_name"),
            surname: text("surname"),
            job_title: text("job_title"),
            department: text("department"),
            usage_location: text("usage_location"),
            mobile_phone: text("mobile_phone"),
            ..UserFields::default()
        };
        let checked = |name: &str| fields.get(name).is_some_and(|it| it == "true");
        form.force_change = checked("force_change");
        form.account_enabled = checked("account_enabled");
        (form, verdict)
    }
}

/// `Some(text)`, or `None` for an empty field.
fn optional(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

#[derive(Debug, Template)]
#[template(path = "portal/user_form.html")]
struct UserForm {
    title: String,
    tenant: String,
    header: Header,
    /// The user being edited; `None` on the new-user form.
    user: Option<User>,
    fields: UserFields,
    /// The profile as the edit page first showed it (form-encoded), so a save changes only what
    /// the administrator changed; empty on the new-user form.
    shown: String,
    csrf: String,
    error: Option<String>,
}

fn form_page(
    caller: &Caller,
    csrf: String,
    user: Option<User>,
    fields: UserFields,
    shown: String,
    error: Option<(StatusCode, String)>,
) -> Response {
    let title = user.as_ref().map_or_else(|| "New user".to_owned(), |it| format!("Edit {}", it.display_name));
    let (status, error) = error.map_or((StatusCode::OK, None), |(status, text)| (status, Some(text)));
    let header = Header::of(caller);
    let page = UserForm { title, tenant: caller.tenant.id.to_string(), header, user, fields, shown, csrf, error };
    html(status, &page)
}

/// `GET /{tenant}/admin/users/new`: the new-user form.
pub(in crate::pages) async fn new_user(Admin { caller, csrf }: Admin) -> Response {
    let domain =
        caller.user().and_then(|it| it.user_principal_name.split_once('@').map(|(_, domain)| domain.to_owned()));
    let fields = UserFields {
        user_principal_name: domain.map(|it| format!("@{it}")).unwrap_or_default(),
        force_change: true,
        account_enabled: true,
        ..UserFields::default()
    };
    form_page(&caller, csrf, None, fields, String::new(), None)
}

/// `POST /{tenant}/admin/users/new`: creates the user through the same use case as
/// `POST /users`; shows a password Keyward chose once, or opens the new user's page.
pub(in crate::pages) async fn create_user(State(state): State<AppState>, posted: AdminForm) -> Response {
    let form = posted.map();
    let AdminForm { caller, csrf, .. } = posted;
    let (fields, verdict) = UserFields::from_form(&form);
    if let Err(err) = verdict {
        return form_page(&caller, csrf, None, fields, String::new(), form_error(err).ok());
    }
    let password = form.get("password").filter(|it| !it.is_empty()).map(|it| Secret::new(it.clone()));
    let alias = fields.user_principal_name.split('@').next().unwrap_or_default().to_owned();
    let draft = UserDraft {
        user_principal_name: Some(fields.user_principal_name.clone()),
        display_name: Some(fields.display_name.clone()),
        mail_nickname: Some(alias),
        account_enabled: Some(fields.account_enabled),
        password,
        force_change_password_next_sign_in: Some(fields.force_change),
        given_name: optional(&fields.given_name),
        surname: optional(&fields.surname),
        job_title: optional(&fields.job_title),
        department: optional(&fields.department),
        usage_location: optional(&fields.usage_location),
        mobile_phone: optional(&fields.mobile_phone),
        ..UserDraft::default()
    };
    match state.app.portal_create_user(&caller, draft).await {
        Ok((user, Some(generated))) => {
            let page = SecretPage {
                title: "User created",
                tenant: caller.tenant.id.to_string(),
                header: Header::of(&caller),
                user,
                what:
                    "The user's first password, chosen by Keyward. It is not shown again; the user must change it at \
                       their first sign-in."
                        .into(),
                secret: generated.expose().to_owned(),
            };
            html(StatusCode::OK, &page)
        }
        Ok((user, None)) => see_other(&format!("/{}/admin/users/{}?done=create", caller.tenant.id, user.id)),
        Err(err) => match form_error(err) {
            Ok(error) => form_page(&caller, csrf, None, fields, String::new(), Some(error)),
            Err(err) => failure(err),
        },
    }
}

/// `GET /{tenant}/admin/users/{id}/edit`: the profile form.
pub(in crate::pages) async fn edit_user(
    State(state): State<AppState>,
    Admin { caller, csrf }: Admin,
    Path((_, key)): Path<(String, String)>,
) -> Response {
    match state.app.get_user(&caller, &key).await {
        Ok(user) => {
            let fields = UserFields::of(&user);
            let shown = fields.encode();
            form_page(&caller, csrf, Some(user), fields, shown, None)
        }
        Err(err) => failure(err),
    }
}

/// The changes from `before` (what the edit page showed) to `fields`: only what differs, so
/// that an edit needs only the permissions of what it changes, and a page opened before
/// another administrator's change does not put their values back.
fn patch_of(before: &UserFields, fields: &UserFields) -> UserPatch {
    let changed = |old: &str, new: &str| (old != new).then(|| optional(new));
    UserPatch {
        display_name: (before.display_name != fields.display_name).then(|| fields.display_name.clone()),
        user_principal_name: (before.user_principal_name != fields.user_principal_name)
            .then(|| fields.user_principal_name.clone()),
        given_name: changed(&before.given_name, &fields.given_name),
        surname: changed(&before.surname, &fields.surname),
        job_title: changed(&before.job_title, &fields.job_title),
        department: changed(&before.department, &fields.department),
        usage_location: changed(&before.usage_location, &fields.usage_location),
        mobile_phone: changed(&before.mobile_phone, &fields.mobile_phone),
        ..UserPatch::default()
    }
}

/// `POST /{tenant}/admin/users/{id}/edit`: saves what changed through the same use case as
/// `PATCH /users/{id}`.
pub(in crate::pages) async fn save_user(
    State(state): State<AppState>,
    Path((_, key)): Path<(String, String)>,
    posted: AdminForm,
) -> Response {
    let form = posted.map();
    let AdminForm { caller, csrf, .. } = posted;
    let user = match state.app.get_user(&caller, &key).await {
        Ok(it) => it,
        Err(err) => return failure(err),
    };
    let (fields, verdict) = UserFields::from_form(&form);
    // What the page showed (kept across a refused save); without it, the user as stored now.
    let shown = form.get("shown").cloned().unwrap_or_default();
    if let Err(err) = verdict {
        return form_page(&caller, csrf, Some(user), fields, shown, form_error(err).ok());
    }
    let before = if shown.is_empty() {
        UserFields::of(&user)
    } else {
        UserFields::from_form(&form_urlencoded::parse(shown.as_bytes()).into_owned().collect()).0
    };
    let patch = patch_of(&before, &fields);
    if patch == UserPatch::default() {
        return see_other(&format!("/{}/admin/users/{}?done=unchanged", caller.tenant.id, user.id));
    }
    match state.app.update_user(&caller, &user.id.to_string(), patch).await {
        Ok(()) => see_other(&format!("/{}/admin/users/{}?done=edit", caller.tenant.id, user.id)),
        Err(err) => match form_error(err) {
            Ok(error) => form_page(&caller, csrf, Some(user), fields, shown, Some(error)),
            Err(err) => failure(err),
        },
    }
}
