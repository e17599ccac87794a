// The demo page: fills the expression list from api/expressions, shows the
// slider's value, posts the form to api/synthesize and shows the PNG it
// returns (at its full resolution; the page only scales it down to fit) with
// a download link. Errors from the server are JSON {"error": "..."}.
(function () {
  "use strict";

  const form = document.getElementById("form");
  const file = document.getElementById("image");
  const expression = document.getElementById("expression");
  const slider = document.getElementById("intensity");
  const sliderValue = document.getElementById("intensity-value");
  const submit = document.getElementById("submit");
  const status = document.getElementById("status");
  const source = document.getElementById("source");
  const sourceImage = document.getElementById("source-image");
  const result = document.getElementById("result");
  const resultImage = document.getElementById("result-image");
  const caption = document.getElementById("caption");
  const download = document.getElementById("download");
  const maxBytes = Number(form.dataset.maxBytes);
  let sourceUrl = null;
  let resultUrl = null;

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function showValue() {
    sliderValue.textContent = Number(slider.value).toFixed(2);
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && body.error) {
        return body.error;
      }
    } catch (ignored) {
      // not JSON: fall through to the status line
    }
    return "the server answered " + response.status + " " + response.statusText;
  }

  async function loadExpressions() {
    try {
      const response = await fetch("api/expressions");
      if (!response.ok) {
        throw new Error(await errorText(response));
      }
      const names = await response.json();
      expression.replaceChildren(...names.map(function (name) {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        return option;
      }));
      // start on a real change: the first expression other than neutral
      const first = names.find(function (name) { return name !== "neutral"; });
      if (first) {
        expression.value = first;
      }
    } catch (e) {
      say("Cannot load the model's expressions: " + e.message, true);
    }
  }

  function stem(name) {
    const dot = name.lastIndexOf(".");
    return (dot > 0 ? name.slice(0, dot) : name).replace(/[^A-Za-z0-9._-]+/g, "_") || "photo";
  }

  file.addEventListener("change", function () {
    result.hidden = true;
    say("", false);
    if (sourceUrl) {
      URL.revokeObjectURL(sourceUrl);
      sourceUrl = null;
    }
    if (file.files.length) {
      sourceUrl = URL.createObjectURL(file.files[0]);
      sourceImage.src = sourceUrl;
      source.hidden = false;
    } else {
      source.hidden = true;
    }
  });

  slider.addEventListener("input", showValue);
  slider.addEventListener("change", showValue);

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (!file.files.length) {
      say("Choose a photo first.", true);
      return;
    }
    const photo = file.files[0];
    if (maxBytes && photo.size > maxBytes) {
      say("image: " + photo.name + " is larger than the limit of " + form.dataset.limit + ".",
          true);
      return;
    }
    const data = new FormData();
    data.append("image", photo, photo.name);
    data.append("expression", expression.value);
    data.append("intensity", slider.value);
    const chosen = expression.value + " at intensity " + Number(slider.value).toFixed(2);
    submit.disabled = true;
    say("Synthesizing " + chosen + "...", false);
    try {
      const response = await fetch("api/synthesize", {method: "POST", body: data});
      if (!response.ok) {
        say(await errorText(response), true);
        return;
      }
      const blob = await response.blob();
      if (resultUrl) {
        URL.revokeObjectURL(resultUrl);
      }
      resultUrl = URL.createObjectURL(blob);
      resultImage.onload = function () {
        caption.textContent = chosen + " (" + resultImage.naturalWidth + " x " +
          resultImage.naturalHeight + " pixels)";
        result.hidden = false;
        say("Done.", false);
      };
      resultImage.src = resultUrl;
      download.href = resultUrl;
      download.download = stem(photo.name) + "_" + expression.value + "_" +
        Number(slider.value).toFixed(2) + ".png";
    } catch (e) {
      say("The request failed: " + e.message, true);
    } finally {
      submit.disabled = false;
    }
  });

  showValue();
  loadExpressions();
}());
