// Keyward's only script, for the admin portal: every page works without it. It adds
//  - search as you type on lists with a search box marked `data-live` (the results, rendered by
//    the server as for the form, replace the element with id `results`; in a picker, the boxes
//    already ticked stay, so one can search several times and pick from each);
//  - a filter box over a long list of checkboxes (`data-filter` names the element whose items
//    it filters; the box is hidden without the script);
//  - a Copy button next to a one-time secret (`data-copy` names the element to copy).
// Served from /assets with the pages' Content-Security-Policy `script-src 'self'`; no inline
// script, no eval, nothing from elsewhere.
"use strict";

document.querySelectorAll("input[data-live]").forEach((input) => {
  const form = input.form;
  const results = document.getElementById("results");
  if (!form || !results) return;
  let timer = 0;
  let latest = 0;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const ticket = ++latest;
      const url = new URL(form.action, location.href);
      url.search = new URLSearchParams(new FormData(form)).toString();
      try {
        const reply = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (!reply.ok || ticket !== latest) {
          if (!reply.ok) console.warn(`Keyward: search as you type answered ${reply.status}`);
          return;
        }
        const page = new DOMParser().parseFromString(await reply.text(), "text/html");
        const fresh = page.getElementById("results");
        if (!fresh) return;
        const ticked = Array.from(results.querySelectorAll("input[type=checkbox]:checked"));
        results.replaceChildren(...Array.from(fresh.childNodes, (node) => document.importNode(node, true)));
        const list = results.querySelector("ul");
        for (const box of ticked) {
          const same = results.querySelector(`input[type=checkbox][value="${CSS.escape(box.value)}"]`);
          if (same) same.checked = true;
          else if (list && box.closest("li")) list.prepend(box.closest("li"));
        }
        history.replaceState(null, "", url);
      } catch (err) {
        // The form still works: pressing Search submits it.
        console.warn("Keyward: search as you type failed:", err);
      }
    }, 250);
  });
});

document.querySelectorAll("input[data-filter]").forEach((input) => {
  const list = document.getElementById(input.dataset.filter);
  if (!list) return;
  input.closest("[hidden]")?.removeAttribute("hidden");
  input.addEventListener("input", () => {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    list.querySelectorAll("li").forEach((item) => {
      const text = item.textContent.toLowerCase();
      item.hidden = !words.every((word) => text.includes(word));
    });
    list.querySelectorAll("fieldset").forEach((group) => {
      group.hidden = !group.querySelector("li:not([hidden])");
    });
  });
});

document.querySelectorAll("button[data-copy]").forEach((button) => {
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = "Copied";
    } catch (_) {
      button.textContent = "Copy failed: select the text";
    }
  });
});
