"""Drive the reference Streamlit page in headless Chromium: runs in the Streamlit tool venv (Playwright there).

    python tests/streamlit_check.py URL [PHOTO]

Opens the page, uploads PHOTO (if given) through the file uploader as a user would, waits for the answer and
prints JSON: the caption (model version), the "Top class" line, the rows of the top-3 table and any error shown.
Uses Debian's chromium (Playwright's own browser download is not available): $CHROMIUM, else /usr/bin/chromium.
"""

from __future__ import annotations

import json
import os
import sys

from playwright.sync_api import sync_playwright

TIMEOUT_MS = 60_000


def main(url: str, photo: str | None) -> int:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                             headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.get_by_text("What kind of waste is it?").wait_for()
        page.locator("[data-testid='stCaptionContainer'], [data-testid='stAlert']").first.wait_for()
        errors = page.locator("[data-testid='stAlert']").all_inner_texts()
        result = {"caption": " ".join(page.locator("[data-testid='stCaptionContainer']").all_inner_texts()),
                  "errors": errors, "top": None, "table": []}
        if photo is not None and not errors:
            page.locator("input[type='file']").set_input_files(photo)
            top = page.locator("[data-testid='stMarkdownContainer']", has_text="Top class:")
            top.wait_for()
            page.locator("[data-testid='stTable'] tbody tr").first.wait_for()
            result["top"] = top.inner_text()
            result["table"] = [[cell.strip() for cell in row.locator("th, td").all_inner_texts() if cell.strip()]
                               for row in page.locator("[data-testid='stTable'] tbody tr").all()]
            result["chart"] = page.locator("[data-testid='stVegaLiteChart']").count()
        browser.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
