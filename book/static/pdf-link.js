// Add the whole-book PDF (built offline by tools/build_pdf.py) to the theme's download menu.
document.addEventListener("DOMContentLoaded", function () {
  const root = document.documentElement.dataset.content_root || "";
  const menu = document.querySelector(".dropdown-download-buttons ul");
  if (!menu) return;
  const li = document.createElement("li");
  li.innerHTML = '<a href="' + root + 'generative-models-derived.pdf" class="btn btn-sm dropdown-item" ' +
    'title="The whole book as one PDF"><span class="btn__icon-container"><i class="fas fa-file-pdf"></i></span>' +
    '<span class="btn__text-container">Whole book (.pdf)</span></a>';
  menu.appendChild(li);
});
