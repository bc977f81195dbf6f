"""Model fidelity: every Graph response the compat tests received, read through msgraph-sdk's
models (v1.0 responses through `msgraph`, beta ones through `msgraph_beta`).

A property the model does not define lands in the model's `additional_data`; unless it is an
annotation (`@odata.type`, `@removed`, `members@delta`) or one of Keyward's documented extensions
(EXTENSIONS), that is a name Graph does not have there, and the check fails. The entity type of a
response is read from its `@odata.context`; each context Keyward answers must be known here, so a
new resource cannot slip past the check.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlparse

from kiota_serialization_json.json_parse_node import JsonParseNode

# Keyward's own properties, documented in docs/graph-differences.md: (model class, property).
EXTENSIONS: set[tuple[str, str]] = set()

# Entity sets and navigation paths (lowercase, without `('id')`, `(select)` or `/$entity`) and
# their model: module under `<package>.generated.models` and class name.
ENTITY_TYPES: dict[str, tuple[str, str]] = {
    "users": ("user", "User"),
    "users/$entity": ("user", "User"),
    "me": ("user", "User"),
    "groups": ("group", "Group"),
    "directoryobjects": ("directory_object", "DirectoryObject"),
    "directoryobjects/microsoft.graph.user": ("user", "User"),
    "directoryobjects/microsoft.graph.group": ("group", "Group"),
    "serviceprincipals": ("service_principal", "ServicePrincipal"),
    "applications": ("application", "Application"),
    "organization": ("organization", "Organization"),
    "directoryroles": ("directory_role", "DirectoryRole"),
    "directory/administrativeunits": ("administrative_unit", "AdministrativeUnit"),
    "oauth2permissiongrants": ("o_auth2_permission_grant", "OAuth2PermissionGrant"),
    "auditlogs/directoryaudits": ("directory_audit", "DirectoryAudit"),
    "auditlogs/signins": ("sign_in", "SignIn"),
    "rolemanagement/directory/roledefinitions": ("unified_role_definition", "UnifiedRoleDefinition"),
    "rolemanagement/directory/roleassignments": ("unified_role_assignment", "UnifiedRoleAssignment"),
    "rolemanagement/directory/transitiveroleassignments": ("unified_role_assignment", "UnifiedRoleAssignment"),
    "rolemanagement/directory/roleassignmentschedulerequests": (
        "unified_role_assignment_schedule_request",
        "UnifiedRoleAssignmentScheduleRequest",
    ),
    "rolemanagement/directory/roleeligibilityschedulerequests": (
        "unified_role_eligibility_schedule_request",
        "UnifiedRoleEligibilityScheduleRequest",
    ),
    "rolemanagement/directory/roleassignmentschedules": ("unified_role_assignment_schedule", "UnifiedRoleAssignmentSchedule"),
    "rolemanagement/directory/roleassignmentscheduleinstances": (
        "unified_role_assignment_schedule_instance",
        "UnifiedRoleAssignmentScheduleInstance",
    ),
    "rolemanagement/directory/roleeligibilityschedules": ("unified_role_eligibility_schedule", "UnifiedRoleEligibilitySchedule"),
    "rolemanagement/directory/roleeligibilityscheduleinstances": (
        "unified_role_eligibility_schedule_instance",
        "UnifiedRoleEligibilityScheduleInstance",
    ),
    "rolemanagement/directory/roleassignmentapprovals": ("approval", "Approval"),
    "rolemanagement/directory/roleassignmentapprovals/steps": ("approval_step", "ApprovalStep"),
    "policies/rolemanagementpolicies": ("unified_role_management_policy", "UnifiedRoleManagementPolicy"),
    "policies/rolemanagementpolicies/rules": ("unified_role_management_policy_rule", "UnifiedRoleManagementPolicyRule"),
    "policies/rolemanagementpolicyassignments": (
        "unified_role_management_policy_assignment",
        "UnifiedRoleManagementPolicyAssignment",
    ),
    "users/authentication/methods": ("authentication_method", "AuthenticationMethod"),
    "users/authentication/passwordmethods": ("password_authentication_method", "PasswordAuthenticationMethod"),
    "users/authentication/phonemethods": ("phone_authentication_method", "PhoneAuthenticationMethod"),
    "users/authentication/emailmethods": ("email_authentication_method", "EmailAuthenticationMethod"),
    "users/authentication/softwareoathmethods": (
        "software_oath_authentication_method",
        "SoftwareOathAuthenticationMethod",
    ),
    "users/authentication/temporaryaccesspassmethods": (
        "temporary_access_pass_authentication_method",
        "TemporaryAccessPassAuthenticationMethod",
    ),
    "users/authentication/fido2methods": ("fido2_authentication_method", "Fido2AuthenticationMethod"),
    "users/authentication/requirements": ("strong_authentication_requirements", "StrongAuthenticationRequirements"),
    "users/authentication/signinpreferences": ("sign_in_preferences", "SignInPreferences"),
    "policies/authenticationmethodspolicy": ("authentication_methods_policy", "AuthenticationMethodsPolicy"),
    "policies/authenticationmethodspolicy/authenticationmethodconfigurations": (
        "authentication_method_configuration",
        "AuthenticationMethodConfiguration",
    ),
    "policies/identitysecuritydefaultsenforcementpolicy": (
        "identity_security_defaults_enforcement_policy",
        "IdentitySecurityDefaultsEnforcementPolicy",
    ),
    "reports/authenticationmethods/userregistrationdetails": (
        "user_registration_details",
        "UserRegistrationDetails",
    ),
}


def _named_type(context: str) -> tuple[str, str] | None:
    """The model of a context naming a type (`#microsoft.graph.passwordCredential`, what an
    action or function returns), or a collection of one (`#Collection(unifiedRoleEligibilitySchedule)`)."""
    name = context.split("$metadata#", 1)[-1]
    if name.startswith("Collection(") and name.endswith(")"):
        name = name.removeprefix("Collection(").removesuffix(")").removeprefix("microsoft.graph.")
        if not name.isalnum():
            return None
        return re.sub("([A-Z])", r"_\1", name).lower(), name[0].upper() + name[1:]
    name = name.removeprefix("microsoft.graph.")
    if name == context.split("$metadata#", 1)[-1] or not name.isalnum():
        return None
    return re.sub("([A-Z])", r"_\1", name).lower(), name[0].upper() + name[1:]


@dataclass
class Report:
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    contexts: set[str] = field(default_factory=set)


def _entity_path(context: str) -> str | None:
    """`…/$metadata#users('x')/authentication/methods/$entity` → `users/authentication/methods`."""
    if "$metadata#" not in context:
        return None
    path = context.split("$metadata#", 1)[1]
    path = re.sub(r"\('[^']*'\)", "", path)  # key segments
    path = re.sub(r"\([^)]*\)", "", path)  # $select lists
    path = path.removesuffix("/$entity")
    return path.lower()


def _model(package: str, entry: tuple[str, str]):
    module = importlib.import_module(f"{package}.generated.models.{entry[0]}")
    return getattr(module, entry[1])


def _walk(value, where: str, problems: list[str], seen: set[int]) -> None:
    """Reports unknown properties in `value` (a parsed model) and every model inside it."""
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, f"{where}[{index}]", problems, seen)
        return
    extra = getattr(value, "additional_data", None)
    if not isinstance(extra, dict):
        return
    kind = type(value).__name__
    for key in extra:
        if "@" in key or (kind, key) in EXTENSIONS:
            continue
        problems.append(f"{where}: '{key}' is not a property of {kind}")
    for name, item in vars(value).items():
        if name in ("additional_data", "backing_store") or item is None:
            continue
        if isinstance(item, list) or hasattr(item, "additional_data"):
            _walk(item, f"{where}.{name}", problems, seen)


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _general(message: str) -> str:
    """A problem without the ids and positions that make each occurrence distinct."""
    return re.sub(r"\[\d+\]", "[n]", _GUID.sub("{id}", re.sub(r"https://[^/]+", "", message)))


def check(responses: list[tuple[str, str, int, str]]) -> Report:
    """Reads each successful JSON response through its model; see the module's doc."""
    report = Report()
    for method, url, status, text in responses:
        if not 200 <= status < 300 or not text:
            continue
        try:
            body = json.loads(text)
        except ValueError:
            report.problems.append(f"{method} {url}: not JSON")
            continue
        context = body.get("@odata.context") if isinstance(body, dict) else None
        if not context:
            continue
        report.contexts.add(context.split("$metadata#", 1)[-1])
        path = _entity_path(context)
        if path is not None and path.startswith("edm."):
            continue  # a primitive value (`Edm.Boolean` of an action)
        if context.split("$metadata#", 1)[-1].lower().startswith("collection(edm."):
            continue  # primitive values (the ids `getMemberGroups` answers)
        if context.split("$metadata#", 1)[-1].startswith("keyward/"):
            continue  # Keyward's own extensions (/beta/keyward/…), which no SDK models
        entry = _named_type(context) if path == "collection" else ENTITY_TYPES.get(path or "") or _named_type(context)
        if entry is None:
            report.problems.append(f"{method} {url}: no model known for @odata.context '{path}'")
            continue
        package = "msgraph_beta" if urlparse(url).path.startswith("/beta/") else "msgraph"
        model = _model(package, entry)
        items = body["value"] if isinstance(body.get("value"), list) else [body]
        for index, item in enumerate(items):
            parsed = JsonParseNode(item).get_object_value(model)
            report.checked += 1
            _walk(parsed, f"{method} {urlparse(url).path} [{index}]", report.problems, set())
    report.problems = sorted({_general(it) for it in report.problems})
    return report
