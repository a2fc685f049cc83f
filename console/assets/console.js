// pgvault console: the few things pages need a script for. Everything
// works without it except live updates; nothing is loaded from elsewhere.
//  - <time datetime> elements are shown in the browser's time zone, zone named;
//  - [data-live] elements follow a server-sent event stream: each "fragment"
//    event replaces their content with HTML the server rendered (escaped
//    there), an "end" event (the job has ended) or a "session" event (the
//    session is gone) stops following; a stream that breaks off without
//    either is reconnected by EventSource itself;
//  - [data-copy] buttons copy the text of the element they name;
//  - [data-download] buttons save the text of the element they name as a file;
//  - forms with [data-confirm] ask before submitting.
(function () {
  "use strict";

  var zoneFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
    hour12: false, timeZoneName: "short"
  });

  function localiseTimes(root) {
    var nodes = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var when = new Date(node.getAttribute("datetime"));
      if (isNaN(when.getTime())) { continue; }
      if (!node.title) { node.title = node.textContent; }
      node.textContent = zoneFormat.format(when);
    }
  }

  function follow(element) {
    var source = new EventSource(element.getAttribute("data-live"));
    var note = document.getElementById(element.getAttribute("data-live-note") || "");
    source.addEventListener("fragment", function (event) {
      element.innerHTML = event.data;
      localiseTimes(element);
      if (note) { note.textContent = "Live: updated " + zoneFormat.format(new Date()); }
    });
    source.addEventListener("end", function () {
      source.close();
      if (note) { note.textContent = "The job has ended; this page shows its final state."; }
    });
    source.addEventListener("session", function () {
      source.close();
      if (note) { note.textContent = "Your session has ended: sign in again to follow the job."; }
    });
    source.onerror = function () {
      if (!note) { return; }
      // CLOSED: the server refused the stream (EventSource gives up).
      note.textContent = source.readyState === EventSource.CLOSED
        ? "Live updates stopped: reload the page to follow the job again."
        : "Live updates interrupted; reconnecting…";
    };
  }

  function textOf(selector) {
    var source = document.querySelector(selector);
    return source ? source.textContent : "";
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy], [data-download]");
    if (!button) { return; }
    if (button.hasAttribute("data-copy")) {
      var text = textOf(button.getAttribute("data-copy"));
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { button.textContent = "Select and copy"; });
      } else {
        button.textContent = "Select and copy";
      }
    } else {
      var blob = new Blob([textOf(button.getAttribute("data-source"))], { type: "text/plain" });
      var link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = button.getAttribute("data-download");
      document.body.appendChild(link);
      link.click();
      setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 0);
    }
  });

  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    localiseTimes(document);
    var live = document.querySelectorAll("[data-live]");
    for (var i = 0; i < live.length; i++) { follow(live[i]); }
  });
})();
