// Keyward's passkey ceremonies on the sign-in and account pages. A form marked `data-passkey`
// ("get" to sign in, "create" to register) carries the WebAuthn options as JSON in
// `data-options`; this script shows the form (it is `hidden` without a script or without
// WebAuthn), runs the ceremony when it is submitted, puts `PublicKeyCredential.toJSON()` into its
// `credential` field and posts it. On the user-name page (`data-conditional`) it also offers the
// user's passkeys in the browser's autofill where the browser supports that. An element marked
// `data-passkey-fallback` (what to do without passkeys) is removed where the browser has WebAuthn.
// Served from /assets with the pages' Content-Security-Policy `script-src 'self'`; no inline
// script, no eval, nothing from elsewhere. Every other method works without it.
"use strict";

const base64url = {
  encode(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (const byte of bytes) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  },
  decode(text) {
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(padded), (ch) => ch.charCodeAt(0)).buffer;
  },
};

// The browser's own JSON parsers where it has them (WebAuthn level 3), otherwise the same
// conversion by hand: the Base64URL fields become buffers.
function creationOptions(json) {
  if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
    return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: base64url.decode(json.challenge),
    user: { ...json.user, id: base64url.decode(json.user.id) },
    excludeCredentials: (json.excludeCredentials || []).map((it) => ({ ...it, id: base64url.decode(it.id) })),
  };
}

function requestOptions(json) {
  if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: base64url.decode(json.challenge),
    allowCredentials: (json.allowCredentials || []).map((it) => ({ ...it, id: base64url.decode(it.id) })),
  };
}

function credentialJson(credential) {
  if (typeof credential.toJSON === "function") {
    try {
      return credential.toJSON();
    } catch (err) {
      console.warn("Keyward: PublicKeyCredential.toJSON failed, encoding by hand:", err);
    }
  }
  const response = {};
  for (const name of ["clientDataJSON", "attestationObject", "authenticatorData", "signature", "userHandle"]) {
    const value = credential.response[name];
    if (value) response[name] = base64url.encode(value);
  }
  return {
    id: credential.id,
    rawId: base64url.encode(credential.rawId),
    type: credential.type,
    response,
    authenticatorAttachment: credential.authenticatorAttachment || null,
    clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
  };
}

function explain(err) {
  switch (err && err.name) {
    case "NotAllowedError":
      return "The passkey request was cancelled or timed out. Try again, or sign in another way.";
    case "InvalidStateError":
      return "This device already holds a passkey for your account. Use it to sign in, or choose another device.";
    case "SecurityError":
      return "Passkeys don't work on this address. Ask your administrator to check the server's public URL.";
    default:
      return "Your browser could not use a passkey here. Try again, or sign in another way.";
  }
}

// Where the browser has WebAuthn, the message saying it is needed goes.
if (window.PublicKeyCredential && navigator.credentials) {
  document.querySelectorAll("[data-passkey-fallback]").forEach((it) => it.remove());
}

document.querySelectorAll("form[data-passkey]").forEach((form) => {
  if (!window.PublicKeyCredential || !navigator.credentials) return;
  const field = form.querySelector("input[name=credential]");
  const status = form.querySelector("[data-status]");
  let options;
  try {
    options = JSON.parse(form.dataset.options);
  } catch (err) {
    console.warn("Keyward: unreadable passkey options:", err);
    return;
  }
  form.hidden = false;
  const creating = form.dataset.passkey === "create";
  let autofill = null;

  const finish = (credential) => {
    field.value = JSON.stringify(credentialJson(credential));
    form.submit();
  };

  form.addEventListener("submit", async (event) => {
    if (field.value) return;
    event.preventDefault();
    if (autofill) autofill.abort();
    if (status) status.textContent = "";
    try {
      const credential = creating
        ? await navigator.credentials.create({ publicKey: creationOptions(options) })
        : await navigator.credentials.get({ publicKey: requestOptions(options) });
      finish(credential);
    } catch (err) {
      console.warn("Keyward: passkey ceremony failed:", err);
      if (status) status.textContent = explain(err);
    }
  });

  if (!creating && "conditional" in form.dataset && PublicKeyCredential.isConditionalMediationAvailable) {
    PublicKeyCredential.isConditionalMediationAvailable().then((available) => {
      if (!available) return;
      autofill = new AbortController();
      navigator.credentials
        .get({ publicKey: requestOptions(options), mediation: "conditional", signal: autofill.signal })
        .then(finish)
        .catch(() => {
          // Aborted by the button, or dismissed: the button still works.
        });
    });
  }
});
