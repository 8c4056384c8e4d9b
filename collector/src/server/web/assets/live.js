// nodewarden status page: live tiles over server-sent events. The page is
// complete without this script; it only swaps tiles for fresh ones as the
// collector sends them (no reload), and says whether it is connected.
(function () {
  'use strict';
  var status = document.getElementById('live-status');
  if (!status || !document.getElementById('sec-nodes') || !window.EventSource) {
    return;
  }
  var source = new EventSource('/events/stream');
  source.addEventListener('open', function () {
    status.textContent = 'live';
    status.className = 'live on';
  });
  source.addEventListener('error', function () {
    status.textContent = 'live updates lost; retrying';
    status.className = 'live off';
  });
  source.addEventListener('tile', function (event) {
    var tile = JSON.parse(event.data);
    var old = document.getElementById(tile.id);
    if (!tile.html) {
      if (old) {
        old.remove();
      }
      return;
    }
    var template = document.createElement('template');
    template.innerHTML = tile.html;
    var fresh = template.content.firstElementChild;
    if (!fresh) {
      return;
    }
    if (old) {
      old.replaceWith(fresh);
    } else {
      var box = document.getElementById(tile.within);
      if (box) {
        box.appendChild(fresh);
      }
    }
  });
})();
