// Optional: every page reads without this. Copy buttons beside the pull commands, and
// expand/collapse all on the tree.
document.querySelectorAll(".cmd").forEach(function (row) {
  var input = row.querySelector("input"), button = document.createElement("button");
  button.type = "button"; button.textContent = "copy";
  button.addEventListener("click", function () {
    input.select();
    if (navigator.clipboard) { navigator.clipboard.writeText(input.value); }
    button.textContent = "copied";
  });
  row.appendChild(button);
});
document.querySelectorAll("[data-expand]").forEach(function (button) {
  button.hidden = false;
  button.addEventListener("click", function () {
    var open = button.dataset.expand === "1";
    document.querySelectorAll("details.n").forEach(function (d) { d.open = open; });
  });
});
