//! Graph's query options on directory collections: which are allowed, when they need advanced
//! query mode (`ConsistencyLevel: eventual` with `$count=true`), and Graph's messages when not.
//!
//! The HTTP layer hands the raw options in; the store receives a validated [`Plan`].

use crate::odata::{CmpOp, Expr, Literal, Path, StrFunc, parse_filter};

/// The type of a property, for checking literals in `$filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropType {
    String,
    Bool,
    DateTime,
    Guid,
    StringCollection,
}

/// Which `$filter` operators a property supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterSupport {
    /// Not filterable.
    None,
    /// `eq`, `in` (and `ne`, `not` in advanced mode).
    Eq,
    /// `eq`, `in`, `startswith` (and `ne`, `not`, `endswith` where allowed, in advanced mode).
    EqStartsWith { ends_with: bool },
    /// `eq`, `ge`, `le` (and `ne` in advanced mode).
    Range,
    /// Lambda `any` with `eq` and `startswith` on the element.
    Any,
}

/// A property of a resource type as the query planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Property {
    pub name: &'static str,
    pub ty: PropType,
    pub filter: FilterSupport,
    /// Sortable without advanced query mode.
    pub is_default_sortable: bool,
    /// Sortable in advanced query mode.
    pub is_sortable: bool,
    /// Returned by v1.0 when no `$select` is given.
    pub is_default_selected: bool,
    /// Returned only when named in `$select`.
    pub is_select_only: bool,
    /// Searchable with `$search="name:term"`.
    pub is_searchable: bool,
}

/// A resource type's query surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// OData type name without namespace, e.g. `user`.
    pub type_name: &'static str,
    /// Name used in Graph's "of resource 'User'" messages.
    pub display_type: &'static str,
    pub properties: &'static [Property],
}

impl Resource {
    /// Looks a property up by its exact name (Graph property names are case-sensitive in `$select`,
    /// but Keyward accepts any case, as Graph does for `$filter`).
    pub fn property(&self, name: &str) -> Option<&'static Property> {
        self.properties.iter().find(|it| it.name.eq_ignore_ascii_case(name))
    }
}

const fn prop(name: &'static str, ty: PropType, filter: FilterSupport) -> Property {
    Property {
        name,
        ty,
        filter,
        is_default_sortable: false,
        is_sortable: false,
        is_default_selected: false,
        is_select_only: false,
        is_searchable: false,
    }
}

const fn default_selected(mut it: Property) -> Property {
    it.is_default_selected = true;
    it
}

const fn sortable(mut it: Property, by_default: bool) -> Property {
    it.is_sortable = true;
    it.is_default_sortable = by_default;
    it
}

const fn searchable(mut it: Property) -> Property {
    it.is_searchable = true;
    it
}

const fn select_only(mut it: Property) -> Property {
    it.is_select_only = true;
    it
}

const STARTS: FilterSupport = FilterSupport::EqStartsWith { ends_with: false };
const STARTS_ENDS: FilterSupport = FilterSupport::EqStartsWith { ends_with: true };

/// The `user` resource.
pub const USER: Resource = Resource {
    type_name: "user",
    display_type: "User",
    properties: &[
        default_selected(prop("id", PropType::Guid, FilterSupport::Eq)),
        default_selected(prop("businessPhones", PropType::StringCollection, FilterSupport::Any)),
        default_selected(searchable(sortable(prop("displayName", PropType::String, STARTS), true))),
        default_selected(searchable(sortable(prop("givenName", PropType::String, STARTS), false))),
        default_selected(sortable(prop("jobTitle", PropType::String, STARTS), false)),
        default_selected(searchable(sortable(prop("mail", PropType::String, STARTS_ENDS), false))),
        default_selected(prop("mobilePhone", PropType::String, STARTS)),
        default_selected(prop("officeLocation", PropType::String, STARTS)),
        default_selected(prop("preferredLanguage", PropType::String, STARTS)),
        default_selected(searchable(sortable(prop("surname", PropType::String, STARTS), false))),
        default_selected(searchable(sortable(prop("userPrincipalName", PropType::String, STARTS_ENDS), true))),
        prop("accountEnabled", PropType::Bool, FilterSupport::Eq),
        sortable(prop("createdDateTime", PropType::DateTime, FilterSupport::Range), false),
        sortable(prop("department", PropType::String, STARTS), false),
        searchable(prop("mailNickname", PropType::String, STARTS)),
        prop("otherMails", PropType::StringCollection, FilterSupport::Any),
        prop("usageLocation", PropType::String, FilterSupport::Eq),
        prop("passwordProfile", PropType::String, FilterSupport::None),
        // The profile (`profile.rs`); Graph returns these on v1.0 only when selected.
        prop("ageGroup", PropType::String, FilterSupport::Eq),
        prop("city", PropType::String, STARTS),
        prop("companyName", PropType::String, STARTS),
        prop("consentProvidedForMinor", PropType::String, FilterSupport::Eq),
        prop("country", PropType::String, STARTS),
        prop("creationType", PropType::String, FilterSupport::Eq),
        prop("employeeHireDate", PropType::DateTime, FilterSupport::Range),
        prop("employeeId", PropType::String, STARTS),
        prop("employeeType", PropType::String, STARTS),
        prop("externalUserState", PropType::String, FilterSupport::Eq),
        prop("faxNumber", PropType::String, STARTS),
        prop("passwordPolicies", PropType::String, FilterSupport::Eq),
        prop("postalCode", PropType::String, STARTS),
        prop("state", PropType::String, STARTS),
        prop("streetAddress", PropType::String, STARTS),
        prop("userType", PropType::String, FilterSupport::Eq),
        // Read-only, computed: the sign-in identity the UPN gives, no Exchange proxy addresses,
        // and `null` for a directory that is not synchronized from on-premises.
        prop("identities", PropType::StringCollection, FilterSupport::None),
        prop("proxyAddresses", PropType::StringCollection, FilterSupport::Any),
        prop("onPremisesSyncEnabled", PropType::Bool, FilterSupport::Eq),
        prop("lastPasswordChangeDateTime", PropType::DateTime, FilterSupport::Range),
        select_only(prop("signInSessionsValidFromDateTime", PropType::DateTime, FilterSupport::None)),
        // Read with the sign-in log's permission (see `SIGN_IN_ACTIVITY`).
        select_only(prop(SIGN_IN_ACTIVITY, PropType::String, FilterSupport::None)),
        // Filter-only paths into it ($select names the whole object).
        select_only(prop("signInActivity/lastSignInDateTime", PropType::DateTime, FilterSupport::Range)),
        select_only(prop("signInActivity/lastNonInteractiveSignInDateTime", PropType::DateTime, FilterSupport::Range)),
        select_only(prop("signInActivity/lastSuccessfulSignInDateTime", PropType::DateTime, FilterSupport::Range)),
    ],
};

/// The user's `signInActivity`: selected or filtered on only by callers who may read the sign-in
/// log, as Entra requires `AuditLog.Read.All`.
pub const SIGN_IN_ACTIVITY: &str = "signInActivity";

impl Plan {
    /// Whether the plan selects or filters on `signInActivity`.
    pub fn reads_sign_in_activity(&self) -> bool {
        fn uses(expr: &Expr) -> bool {
            match expr {
                Expr::And(left, right) | Expr::Or(left, right) => uses(left) || uses(right),
                Expr::Not(inner) => uses(inner),
                Expr::Compare { path, .. } | Expr::In { path, .. } | Expr::Func { path, .. } => {
                    path.to_string().starts_with("signInActivity/")
                }
                _ => false,
            }
        }
        self.select.as_ref().is_some_and(|it| it.contains(&SIGN_IN_ACTIVITY)) || self.filter.as_ref().is_some_and(uses)
    }
}

/// The `group` resource.
pub const GROUP: Resource = Resource {
    type_name: "group",
    display_type: "Group",
    properties: &[
        default_selected(prop("id", PropType::Guid, FilterSupport::Eq)),
        default_selected(sortable(prop("createdDateTime", PropType::DateTime, FilterSupport::Range), false)),
        default_selected(searchable(prop("description", PropType::String, STARTS))),
        default_selected(searchable(sortable(prop("displayName", PropType::String, STARTS), true))),
        default_selected(prop("groupTypes", PropType::StringCollection, FilterSupport::Any)),
        default_selected(prop("isAssignableToRole", PropType::Bool, FilterSupport::Eq)),
        // Keyward's groups have no mail address (Graph's mail-enabled groups live in Exchange).
        default_selected(prop("mail", PropType::String, FilterSupport::None)),
        default_selected(prop("mailEnabled", PropType::Bool, FilterSupport::Eq)),
        default_selected(searchable(prop("mailNickname", PropType::String, STARTS))),
        default_selected(prop("securityEnabled", PropType::Bool, FilterSupport::Eq)),
        default_selected(prop("visibility", PropType::String, FilterSupport::None)),
    ],
};

/// The `unifiedRoleDefinition` resource (filtered in memory).
pub const ROLE_DEFINITION: Resource = Resource {
    type_name: "unifiedRoleDefinition",
    display_type: "UnifiedRoleDefinition",
    properties: &[
        default_selected(prop("id", PropType::Guid, FilterSupport::Eq)),
        default_selected(prop("templateId", PropType::Guid, FilterSupport::Eq)),
        default_selected(prop("displayName", PropType::String, STARTS)),
        default_selected(prop("description", PropType::String, FilterSupport::None)),
        default_selected(prop("isBuiltIn", PropType::Bool, FilterSupport::Eq)),
        default_selected(prop("isEnabled", PropType::Bool, FilterSupport::Eq)),
        default_selected(prop("isPrivileged", PropType::Bool, FilterSupport::Eq)),
        default_selected(prop("version", PropType::String, FilterSupport::None)),
        default_selected(prop("resourceScopes", PropType::String, FilterSupport::None)),
        default_selected(prop("rolePermissions", PropType::String, FilterSupport::None)),
    ],
};

/// The `servicePrincipal` resource (filtered in memory: a tenant has few).
pub const SERVICE_PRINCIPAL: Resource = Resource {
    type_name: "servicePrincipal",
    display_type: "ServicePrincipal",
    properties: &[
        default_selected(prop("id", PropType::Guid, FilterSupport::Eq)),
        default_selected(prop("appId", PropType::Guid, FilterSupport::Eq)),
        default_selected(prop("displayName", PropType::String, STARTS)),
        default_selected(prop("accountEnabled", PropType::Bool, FilterSupport::Eq)),
        default_selected(prop("servicePrincipalNames", PropType::StringCollection, FilterSupport::Any)),
        default_selected(prop("servicePrincipalType", PropType::String, FilterSupport::Eq)),
    ],
};

/// The `application` resource (filtered in memory: a tenant has few).
pub const APPLICATION: Resource = Resource {
    type_name: "application",
    display_type: "Application",
    properties: &[
        default_selected(prop("id", PropType::Guid, FilterSupport::Eq)),
        default_selected(prop("appId", PropType::Guid, FilterSupport::Eq)),
        default_selected(prop("displayName", PropType::String, STARTS)),
        default_selected(prop("createdDateTime", PropType::DateTime, FilterSupport::None)),
        default_selected(prop("uniqueName", PropType::String, STARTS)),
        default_selected(prop("isFallbackPublicClient", PropType::Bool, FilterSupport::None)),
        default_selected(prop("signInAudience", PropType::String, FilterSupport::None)),
        // Complex values, only selected (the type matters to `$filter` alone).
        default_selected(prop("passwordCredentials", PropType::StringCollection, FilterSupport::None)),
        default_selected(prop("keyCredentials", PropType::StringCollection, FilterSupport::None)),
        default_selected(prop("publicClient", PropType::String, FilterSupport::None)),
        default_selected(prop("web", PropType::String, FilterSupport::None)),
    ],
};

/// The `unifiedRbacResourceAction` resource (filtered in memory).
pub const RESOURCE_ACTION: Resource = Resource {
    type_name: "unifiedRbacResourceAction",
    display_type: "UnifiedRbacResourceAction",
    properties: &[
        default_selected(prop("id", PropType::String, FilterSupport::Eq)),
        default_selected(prop("name", PropType::String, STARTS)),
        default_selected(prop("actionVerb", PropType::String, FilterSupport::Eq)),
        default_selected(prop("description", PropType::String, FilterSupport::None)),
        default_selected(prop("isPrivileged", PropType::Bool, FilterSupport::Eq)),
    ],
};

/// The raw query options of a collection request, exactly as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawQuery {
    pub filter: Option<String>,
    pub select: Option<String>,
    pub top: Option<String>,
    pub orderby: Option<String>,
    pub count: Option<String>,
    pub search: Option<String>,
    pub skiptoken: Option<String>,
    pub expand: Option<String>,
    pub has_skip: bool,
    /// The `ConsistencyLevel: eventual` header was sent.
    pub is_eventual: bool,
}

/// Sort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderBy {
    pub property: &'static str,
    pub is_descending: bool,
}

/// How `$search` clauses combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchJoin {
    And,
    Or,
}

/// A parsed `$search`: tokens matched (case-insensitively, as substrings) in the named properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub clauses: Vec<(&'static str, String)>,
    pub join: SearchJoin,
}

/// A validated collection query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub filter: Option<Expr>,
    pub select: Option<Vec<&'static str>>,
    pub expand: Option<Expand>,
    pub top: usize,
    pub order_by: Option<OrderBy>,
    pub count: bool,
    pub search: Option<Search>,
    pub skiptoken: Option<String>,
}

/// A relationship to return inline (`$expand=memberOf`), with the properties of its objects
/// (`$expand=members($select=id,displayName)`; `None` for each object's default set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expand {
    pub property: &'static str,
    pub select: Option<Vec<&'static str>>,
}

/// How many related objects an `$expand` returns, as Graph returns for directory objects.
pub const EXPAND_LIMIT: usize = 20;

/// The largest page of a list with `$expand` (a larger `$top` pages with the next link).
pub const EXPAND_PAGE: usize = 100;

/// The relationships of `resource` that `$expand` takes.
fn expandable(resource: &Resource) -> &'static [&'static str] {
    match resource.type_name {
        "user" => &["memberOf", "manager", "directReports"],
        "group" => &["members", "owners"],
        _ => &[],
    }
}

/// Parses `$expand` on `resource`: one relationship, optionally with `($select=…)` naming
/// properties of users or groups (the objects a relationship holds).
pub fn parse_expand(resource: &Resource, raw: Option<&str>) -> Result<Option<Expand>, QueryError> {
    let Some(raw) = raw.map(str::trim).filter(|it| !it.is_empty()) else { return Ok(None) };
    let (name, options) = match raw.split_once('(') {
        Some((name, rest)) => {
            let inner = rest.strip_suffix(')').ok_or_else(|| {
                QueryError::BadRequest(format!("Syntax error in $expand '{raw}': a '(' is not closed."))
            })?;
            (name.trim(), Some(inner.trim()))
        }
        None => (raw, None),
    };
    if name.contains(',') || options.is_some_and(|it| it.contains('(')) {
        return Err(QueryError::Unsupported("Only one relationship can be expanded, one level deep.".into()));
    }
    let Some(property) = expandable(resource).iter().find(|it| it.eq_ignore_ascii_case(name)) else {
        return Err(QueryError::BadRequest(format!(
            "Could not find a property named '{name}' on type 'microsoft.graph.{}' that can be expanded.",
            resource.type_name
        )));
    };
    let select = match options {
        None | Some("") => None,
        Some(options) => {
            let list = options
                .strip_prefix("$select=")
                .or_else(|| options.strip_prefix("select="))
                .filter(|it| !it.contains(';'))
                .ok_or_else(|| {
                    QueryError::Unsupported(format!("Only $select is supported inside $expand, not '{options}'."))
                })?;
            Some(parse_object_select(list)?)
        }
    };
    Ok(Some(Expand { property, select }))
}

/// `$select` on a collection of directory objects (a relationship, an expansion): properties of
/// users or groups, `id` always first.
pub fn parse_object_select(list: &str) -> Result<Vec<&'static str>, QueryError> {
    let mut names = vec!["id"];
    for name in list.split(',').map(str::trim) {
        let found = USER.property(name).or_else(|| GROUP.property(name)).filter(|it| !it.name.contains('/'));
        let Some(found) = found.filter(|it| it.name != SIGN_IN_ACTIVITY) else {
            return Err(QueryError::BadRequest(format!(
                "Could not find a property named '{name}' on type 'microsoft.graph.directoryObject'."
            )));
        };
        if !names.contains(&found.name) {
            names.push(found.name);
        }
    }
    Ok(names)
}

/// Default and maximum page sizes of directory collections.
pub const DEFAULT_TOP: usize = 100;
pub const MAX_TOP: usize = 999;

/// A refused query, with Graph's error code family and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `Request_BadRequest`.
    #[error("{0}")]
    BadRequest(String),
    /// `Request_UnsupportedQuery`.
    #[error("{0}")]
    Unsupported(String),
}

const ADVANCED_HINT: &str = "is not supported because the required parameters might be missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header. Refer to https://aka.ms/graph-docs/advanced-queries for more information";

/// Validates the query options of a request on a collection of `resource`.
pub fn plan(resource: &Resource, raw: &RawQuery) -> Result<Plan, QueryError> {
    if raw.has_skip {
        return Err(QueryError::BadRequest(
            "'$skip' is not supported by the service. Use the @odata.nextLink to page.".into(),
        ));
    }
    let expand = parse_expand(resource, raw.expand.as_deref())?;
    let wants_count = parse_count(raw.count.as_deref())?;
    let is_advanced = raw.is_eventual && wants_count;
    let top = parse_top(raw.top.as_deref())?;
    let select = match &raw.select {
        None => None,
        Some(it) => Some(parse_select(resource, it)?),
    };
    let search = match &raw.search {
        None => None,
        Some(_) if !raw.is_eventual => {
            return Err(QueryError::Unsupported(
                "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'".into(),
            ));
        }
        Some(it) => Some(parse_search(resource, it)?),
    };
    let filter = match &raw.filter {
        None => None,
        Some(it) => {
            let mut expr =
                parse_filter(it).map_err(|err| QueryError::BadRequest(format!("Invalid filter clause: {err}")))?;
            // Checks every clause and writes each property name as the resource spells it, so
            // `displayname` and `displayName` reach the store (or an in-memory evaluator) alike.
            check_filter(resource, &mut expr, is_advanced, None)?;
            Some(expr)
        }
    };
    let order_by = match &raw.orderby {
        None => None,
        Some(it) => {
            let (order, is_default_sortable) = parse_orderby(resource, it)?;
            let needs_advanced = filter.is_some() || search.is_some() || !is_default_sortable;
            if needs_advanced && !is_advanced {
                return Err(QueryError::Unsupported("Sorting not supported for current query.".into()));
            }
            Some(order)
        }
    };
    // A page of expanded objects reads each one's relationship: at most EXPAND_PAGE of them.
    let top = if expand.is_some() { top.min(EXPAND_PAGE) } else { top };
    Ok(Plan {
        filter,
        select,
        expand,
        top,
        order_by,
        count: wants_count && raw.is_eventual,
        search,
        skiptoken: raw.skiptoken.clone(),
    })
}

/// Parses `$top`: 1 to 999, 100 when absent.
/// `$count`: `true` or `false` (in any case); absent is `false`.
pub fn parse_count(raw: Option<&str>) -> Result<bool, QueryError> {
    match raw.map(str::trim) {
        None => Ok(false),
        Some(it) if it.eq_ignore_ascii_case("true") => Ok(true),
        Some(it) if it.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(QueryError::BadRequest(format!("Invalid $count value '{other}'. Use true or false."))),
    }
}

pub fn parse_top(raw: Option<&str>) -> Result<usize, QueryError> {
    match raw {
        None => Ok(DEFAULT_TOP),
        Some(it) => match it.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_TOP).contains(&n) => Ok(n),
            _ => Err(QueryError::BadRequest(format!(
                "Invalid page size specified: '{it}'. Must be between 1 and 999 inclusive."
            ))),
        },
    }
}

fn no_property(resource: &Resource, name: &str) -> QueryError {
    QueryError::BadRequest(format!(
        "Could not find a property named '{name}' on type 'microsoft.graph.{}'.",
        resource.type_name
    ))
}

fn unsupported_clause(resource: &Resource, name: &str) -> QueryError {
    QueryError::Unsupported(format!(
        "Unsupported or invalid query filter clause specified for property '{name}' of resource '{}'.",
        resource.display_type
    ))
}

fn parse_select(resource: &Resource, raw: &str) -> Result<Vec<&'static str>, QueryError> {
    let mut res = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|it| !it.is_empty()) {
        // A path into a complex property is for `$filter`; `$select` names the property.
        let Some(property) = resource.property(name).filter(|it| !it.name.contains('/')) else {
            return Err(no_property(resource, name));
        };
        if !res.contains(&property.name) {
            res.push(property.name);
        }
    }
    if res.is_empty() {
        return Err(QueryError::BadRequest("$select must name at least one property.".into()));
    }
    Ok(res)
}

/// Parses `$orderby`, returning the order and whether it is allowed without advanced query mode.
fn parse_orderby(resource: &Resource, raw: &str) -> Result<(OrderBy, bool), QueryError> {
    let clauses: Vec<&str> = raw.split(',').map(str::trim).filter(|it| !it.is_empty()).collect();
    let [clause] = clauses.as_slice() else {
        return Err(QueryError::Unsupported("Sorting on more than one property is not supported.".into()));
    };
    let mut words = clause.split_whitespace();
    let name = words.next().unwrap_or_default();
    let is_descending = match words.next() {
        None => false,
        Some(it) if it.eq_ignore_ascii_case("asc") => false,
        Some(it) if it.eq_ignore_ascii_case("desc") => true,
        Some(it) => return Err(QueryError::BadRequest(format!("Syntax error at '{it}' in $orderby."))),
    };
    if words.next().is_some() {
        return Err(QueryError::BadRequest(format!("Syntax error in $orderby '{raw}'.")));
    }
    let Some(property) = resource.property(name) else { return Err(no_property(resource, name)) };
    if !property.is_sortable {
        return Err(QueryError::Unsupported(format!("Order by '{}' is not supported.", property.name)));
    }
    Ok((OrderBy { property: property.name, is_descending }, property.is_default_sortable))
}

/// The longest `$search` text, in bytes, as for `$filter`.
pub const MAX_SEARCH_LEN: usize = crate::odata::filter::MAX_INPUT_LEN;
/// The most clauses one `$search` may join: each is a substring match over every row it reads.
pub const MAX_SEARCH_CLAUSES: usize = 10;

fn parse_search(resource: &Resource, raw: &str) -> Result<Search, QueryError> {
    if raw.len() > MAX_SEARCH_LEN {
        return Err(QueryError::BadRequest(format!("The $search value is longer than {MAX_SEARCH_LEN} bytes.")));
    }
    let invalid = || {
        QueryError::BadRequest(format!(
            "Syntax error: the $search value {raw} is not valid. Use \"property:term\" clauses in double quotes."
        ))
    };
    let mut clauses = Vec::new();
    let mut join = None;
    let mut rest = raw.trim();
    loop {
        let Some(after_quote) = rest.strip_prefix('"') else { return Err(invalid()) };
        let Some(end) = after_quote.find('"') else { return Err(invalid()) };
        let clause = &after_quote[..end];
        let Some((name, term)) = clause.split_once(':') else { return Err(invalid()) };
        let Some(property) = resource.property(name.trim()) else { return Err(no_property(resource, name.trim())) };
        if term.contains('\0') {
            return Err(invalid());
        }
        if !property.is_searchable {
            return Err(QueryError::Unsupported(format!("$search is not supported on property '{}'.", property.name)));
        }
        clauses.push((property.name, term.trim().to_lowercase()));
        if clauses.len() > MAX_SEARCH_CLAUSES {
            return Err(QueryError::BadRequest(format!(
                "The $search value joins more than {MAX_SEARCH_CLAUSES} clauses; split the search."
            )));
        }
        rest = after_quote[end + 1..].trim_start();
        if rest.is_empty() {
            break;
        }
        let (word, tail) = rest.split_once(char::is_whitespace).ok_or_else(invalid)?;
        let this_join = if word == "AND" {
            SearchJoin::And
        } else if word == "OR" {
            SearchJoin::Or
        } else {
            return Err(invalid());
        };
        if join.is_some_and(|it| it != this_join) {
            return Err(QueryError::Unsupported("Mixing AND and OR in $search is not supported.".into()));
        }
        join = Some(this_join);
        rest = tail.trim_start();
    }
    Ok(Search { clauses, join: join.unwrap_or(SearchJoin::And) })
}

/// Checks a filter against the resource's properties, operators and literal types.
///
/// `lambda` is the current lambda variable and the collection property it ranges over.
fn check_filter(
    resource: &Resource,
    expr: &mut Expr,
    is_advanced: bool,
    lambda: Option<(&str, &'static Property)>,
) -> Result<(), QueryError> {
    let require_advanced = |op: &str| {
        if is_advanced { Ok(()) } else { Err(QueryError::Unsupported(format!("Operator '{op}' {ADVANCED_HINT}"))) }
    };
    match expr {
        Expr::And(left, right) | Expr::Or(left, right) => {
            check_filter(resource, left, is_advanced, lambda)?;
            check_filter(resource, right, is_advanced, lambda)
        }
        Expr::Not(inner) => {
            require_advanced("not")?;
            check_filter(resource, inner, is_advanced, lambda)
        }
        Expr::Compare { path, op, value } => {
            let property = resolve(resource, path, lambda)?;
            canonical(path, property, lambda);
            let element_type = element_type(property, lambda.is_some());
            let allowed = match (property.filter, &*op) {
                (FilterSupport::None, _) => false,
                (_, CmpOp::Eq) => true,
                (FilterSupport::Any, CmpOp::Ne) => false,
                (_, CmpOp::Ne) => {
                    require_advanced("ne")?;
                    true
                }
                (FilterSupport::Range, CmpOp::Ge | CmpOp::Le) => true,
                (FilterSupport::Range, CmpOp::Gt | CmpOp::Lt) => {
                    require_advanced(&op.to_string())?;
                    true
                }
                _ => false,
            };
            if !allowed {
                return Err(unsupported_clause(resource, property.name));
            }
            check_literal(resource, property, element_type, value)
        }
        Expr::In { path, values } => {
            let property = resolve(resource, path, lambda)?;
            canonical(path, property, lambda);
            if property.filter == FilterSupport::None {
                return Err(unsupported_clause(resource, property.name));
            }
            let element_type = element_type(property, lambda.is_some());
            values.iter().try_for_each(|it| check_literal(resource, property, element_type, it))
        }
        Expr::Func { func, path, value } => {
            let property = resolve(resource, path, lambda)?;
            canonical(path, property, lambda);
            let is_allowed = match (property.filter, &*func) {
                (FilterSupport::EqStartsWith { .. } | FilterSupport::Any, StrFunc::StartsWith) => true,
                (FilterSupport::EqStartsWith { ends_with: true }, StrFunc::EndsWith) => {
                    require_advanced("endsWith")?;
                    true
                }
                _ => false,
            };
            if !is_allowed {
                return Err(unsupported_clause(resource, property.name));
            }
            match value {
                Literal::String(_) => Ok(()),
                _ => Err(QueryError::BadRequest(format!("The second argument of {func:?} must be a string literal."))),
            }
        }
        Expr::Any { collection, var, body } => {
            if lambda.is_some() {
                return Err(QueryError::Unsupported("Nested lambda expressions are not supported.".into()));
            }
            let [name] = collection.0.as_slice() else { return Err(no_property(resource, &collection.to_string())) };
            let Some(property) = resource.property(name) else { return Err(no_property(resource, name)) };
            if property.filter != FilterSupport::Any {
                return Err(unsupported_clause(resource, property.name));
            }
            collection.0 = vec![property.name.to_owned()];
            check_filter(resource, body, is_advanced, Some((var, property)))
        }
        Expr::All { collection, .. } => Err(unsupported_clause(resource, &collection.to_string())),
    }
}

fn resolve(
    resource: &Resource,
    path: &Path,
    lambda: Option<(&str, &'static Property)>,
) -> Result<&'static Property, QueryError> {
    match (lambda, path.0.as_slice()) {
        (Some((var, property)), [head]) if head == var => Ok(property),
        (Some((var, property)), _) => Err(QueryError::BadRequest(format!(
            "The lambda body may only use the range variable '{var}' (an element of '{}'), e.g. {}/any({var}:{var} eq 'value').",
            property.name, property.name
        ))),
        (None, [name]) => match resource.property(name) {
            Some(it) if it.ty == PropType::StringCollection => Err(unsupported_clause(resource, it.name)),
            Some(it) if it.name.contains('/') => Err(no_property(resource, name)),
            Some(it) => Ok(it),
            None => Err(no_property(resource, name)),
        },
        // A member of a complex property (`signInActivity/lastSignInDateTime`).
        (None, [parent, member]) => {
            resource.property(&format!("{parent}/{member}")).ok_or_else(|| no_property(resource, &path.to_string()))
        }
        (None, _) => Err(no_property(resource, &path.to_string())),
    }
}

/// Writes a resolved property path as the resource spells the property (the lambda variable is
/// left as the client named it).
fn canonical(path: &mut Path, property: &'static Property, lambda: Option<(&str, &'static Property)>) {
    if lambda.is_none() {
        path.0 = vec![property.name.to_owned()];
    }
}

fn element_type(property: &Property, is_in_lambda: bool) -> PropType {
    match (property.ty, is_in_lambda) {
        (PropType::StringCollection, true) => PropType::String,
        (ty, _) => ty,
    }
}

fn check_literal(resource: &Resource, property: &Property, ty: PropType, value: &Literal) -> Result<(), QueryError> {
    if let Literal::String(text) = value
        && text.contains('\0')
    {
        return Err(QueryError::BadRequest("String literals in $filter cannot contain NUL characters.".into()));
    }
    if property.ty == PropType::StringCollection && *value == Literal::Null {
        return Err(QueryError::Unsupported(format!(
            "Elements of '{}' are never null; compare them with a string.",
            property.name
        )));
    }
    let is_ok = matches!(
        (ty, value),
        (PropType::String, Literal::String(_) | Literal::Null)
            | (PropType::Guid, Literal::String(_) | Literal::Guid(_))
            | (PropType::Bool, Literal::Bool(_))
            | (PropType::DateTime, Literal::DateTime(_))
    );
    if is_ok {
        return Ok(());
    }
    // Graph's words, then how to write the literal.
    let hint = match ty {
        PropType::DateTime => format!(" Write dates without quotes, e.g. {} ge 2026-01-01T00:00:00Z.", property.name),
        PropType::Bool => format!(" Write true or false without quotes, e.g. {} eq true.", property.name),
        PropType::String | PropType::Guid | PropType::StringCollection => {
            format!(" Write text in single quotes, e.g. {} eq 'value'.", property.name)
        }
    };
    Err(QueryError::BadRequest(format!(
        "A binary operator with incompatible types was detected. Found operand types for property '{}' of resource '{}' and literal {value}.{hint}",
        property.name, resource.display_type
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(filter: &str) -> RawQuery {
        RawQuery { filter: Some(filter.to_owned()), ..RawQuery::default() }
    }

    fn advanced(mut it: RawQuery) -> RawQuery {
        it.is_eventual = true;
        it.count = Some("true".into());
        it
    }

    #[test]
    fn expand_takes_one_relationship_and_a_select() {
        assert_eq!(parse_expand(&USER, Some("MemberOf")), Ok(Some(Expand { property: "memberOf", select: None })));
        assert_eq!(
            parse_expand(&GROUP, Some("members($select=displayName,userPrincipalName)")),
            Ok(Some(Expand { property: "members", select: Some(vec!["id", "displayName", "userPrincipalName"]) }))
        );
        assert_eq!(parse_expand(&USER, Some("manager")), Ok(Some(Expand { property: "manager", select: None })));
        assert!(matches!(parse_expand(&USER, Some("ownedObjects")), Err(QueryError::BadRequest(_))));
        assert!(matches!(parse_expand(&GROUP, Some("members,owners")), Err(QueryError::Unsupported(_))));
        assert!(matches!(parse_expand(&GROUP, Some("members($top=5)")), Err(QueryError::Unsupported(_))));
        assert!(matches!(parse_expand(&GROUP, Some("members($select=nope)")), Err(QueryError::BadRequest(_))));
        assert!(matches!(parse_expand(&GROUP, Some("members($select=id")), Err(QueryError::BadRequest(_))));
        assert!(matches!(parse_expand(&ROLE_DEFINITION, Some("members")), Err(QueryError::BadRequest(_))));
    }

    #[test]
    fn default_filters_are_accepted_without_advanced_mode() {
        for filter in [
            "startswith(displayName,'a')",
            "userPrincipalName eq 'a@contoso.test'",
            "accountEnabled eq false",
            "id in ('00000000-0000-0000-0000-000000000001')",
            "otherMails/any(x:startswith(x,'ad'))",
            "createdDateTime ge 2024-01-01T00:00:00Z",
            "mail eq null",
            "displayName eq 'a' or surname eq 'b'",
        ] {
            assert!(plan(&USER, &raw(filter)).is_ok(), "{filter}");
        }
    }

    #[test]
    fn advanced_operators_need_consistency_level_and_count() {
        let cases = [
            ("displayName ne 'a'", "ne"),
            ("not(startswith(displayName,'a'))", "not"),
            ("endswith(mail,'@contoso.test')", "endsWith"),
        ];
        for (filter, op) in cases {
            let Err(QueryError::Unsupported(message)) = plan(&USER, &raw(filter)) else { panic!("{filter} accepted") };
            assert!(message.starts_with(&format!("Operator '{op}' is not supported")), "{message}");
            assert!(plan(&USER, &advanced(raw(filter))).is_ok(), "{filter}");
        }
    }

    #[test]
    fn filter_errors_say_how_to_write_the_clause() {
        let message = |filter: &str| match plan(&USER, &raw(filter)) {
            Err(QueryError::BadRequest(it) | QueryError::Unsupported(it)) => it,
            Ok(_) => panic!("{filter} accepted"),
        };
        assert!(
            message("createdDateTime ge '2026-01-01'")
                .ends_with("Write dates without quotes, e.g. createdDateTime ge 2026-01-01T00:00:00Z.")
        );
        assert!(
            message("accountEnabled eq 'true'")
                .ends_with("Write true or false without quotes, e.g. accountEnabled eq true.")
        );
        assert!(message("otherMails/any(x:y eq 'a')").contains("must start with the lambda variable 'x'"));
        let lambda = message("otherMails/any(x:x/address eq 'a')");
        assert!(
            lambda.contains("range variable 'x' (an element of 'otherMails')")
                && lambda.contains("otherMails/any(x:x eq 'value')"),
            "{lambda}"
        );
        // Property names in any case, written back as Graph spells them.
        let planned = plan(&USER, &raw("DISPLAYNAME eq 'a' and otherMAILS/any(m:m eq 'b')")).expect("plan");
        assert_eq!(planned.filter.expect("filter").to_string(), "displayName eq 'a' and otherMails/any(m:m eq 'b')");
    }

    #[test]
    fn bad_options_get_graphs_messages() {
        let unknown = plan(&USER, &raw("foo eq 'a'"));
        assert_eq!(
            unknown,
            Err(QueryError::BadRequest("Could not find a property named 'foo' on type 'microsoft.graph.user'.".into()))
        );
        let unsupported = plan(&USER, &raw("startswith(accountEnabled,'a')"));
        assert_eq!(
            unsupported,
            Err(QueryError::Unsupported("Unsupported or invalid query filter clause specified for property 'accountEnabled' of resource 'User'.".into()))
        );
        assert!(matches!(plan(&USER, &raw("accountEnabled eq 'yes'")), Err(QueryError::BadRequest(_))));
        assert!(
            matches!(plan(&USER, &raw("startswith(displayName,")), Err(QueryError::BadRequest(m)) if m.starts_with("Invalid filter clause"))
        );
        let top = RawQuery { top: Some("1000".into()), ..RawQuery::default() };
        assert_eq!(
            plan(&USER, &top),
            Err(QueryError::BadRequest(
                "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive.".into()
            ))
        );
        let skip = RawQuery { has_skip: true, ..RawQuery::default() };
        assert!(matches!(plan(&USER, &skip), Err(QueryError::BadRequest(_))));
        let search = RawQuery { search: Some("\"displayName:ad\"".into()), ..RawQuery::default() };
        assert!(
            matches!(plan(&USER, &search), Err(QueryError::Unsupported(m)) if m.contains("ConsistencyLevel: eventual"))
        );
    }

    #[test]
    fn count_without_the_header_is_ignored_and_orderby_with_filter_needs_advanced() {
        let counted = RawQuery { count: Some("true".into()), ..RawQuery::default() };
        assert_eq!(plan(&USER, &counted).map(|it| it.count), Ok(false));
        assert_eq!(plan(&USER, &advanced(RawQuery::default())).map(|it| it.count), Ok(true));
        let sorted = RawQuery { orderby: Some("displayName desc".into()), ..RawQuery::default() };
        assert_eq!(
            plan(&USER, &sorted).map(|it| it.order_by),
            Ok(Some(OrderBy { property: "displayName", is_descending: true }))
        );
        let mixed = RawQuery { orderby: Some("displayName".into()), ..raw("startswith(displayName,'a')") };
        assert!(matches!(plan(&USER, &mixed), Err(QueryError::Unsupported(_))));
        assert!(plan(&USER, &advanced(mixed)).is_ok());
    }

    #[test]
    fn literals_that_no_store_can_hold_are_refused() {
        assert!(matches!(plan(&USER, &raw("displayName eq 'a\u{0}b'")), Err(QueryError::BadRequest(_))));
        assert!(matches!(plan(&GROUP, &raw("groupTypes/any(x:x eq null)")), Err(QueryError::Unsupported(_))));
        assert!(matches!(plan(&GROUP, &raw("startswith(mail,'x')")), Err(QueryError::Unsupported(_))));
        assert_eq!(parse_top(Some("7")), Ok(7));
        assert!(parse_top(Some("0")).is_err());
    }

    #[test]
    fn search_parses_quoted_clauses() {
        let query = RawQuery {
            search: Some("\"displayName:Ad\" OR \"mail:ad\"".into()),
            is_eventual: true,
            ..RawQuery::default()
        };
        let search = plan(&USER, &query).map(|it| it.search);
        assert_eq!(
            search,
            Ok(Some(Search {
                clauses: vec![("displayName", "ad".into()), ("mail", "ad".into())],
                join: SearchJoin::Or
            }))
        );
        let clauses = |n: usize| vec!["\"mail:q\""; n].join(" OR ");
        let search = |text: String| RawQuery { search: Some(text), is_eventual: true, ..RawQuery::default() };
        assert!(plan(&USER, &search(clauses(MAX_SEARCH_CLAUSES))).is_ok());
        assert!(matches!(plan(&USER, &search(clauses(MAX_SEARCH_CLAUSES + 1))), Err(QueryError::BadRequest(_))));
        let long = format!("\"mail:{}\"", "q".repeat(MAX_SEARCH_LEN));
        assert!(matches!(plan(&USER, &search(long)), Err(QueryError::BadRequest(_))));
        let select =
            RawQuery { select: Some("displayName,signInSessionsValidFromDateTime".into()), ..RawQuery::default() };
        assert_eq!(
            plan(&USER, &select).map(|it| it.select),
            Ok(Some(vec!["displayName", "signInSessionsValidFromDateTime"]))
        );
    }
}
