document.getElementById("app").textContent = "Confab";
