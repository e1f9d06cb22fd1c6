// Copy buttons for install snippets and new tokens. The pages work without this script:
// the text is in a <pre> to select by hand, and the buttons stay hidden.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const source = document.getElementById(button.dataset.copy);
    if (!source) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = source.textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
      } catch (error) {
        // No clipboard API (plain http on a non-local host): select the text instead.
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        document.execCommand("copy");
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }
});
