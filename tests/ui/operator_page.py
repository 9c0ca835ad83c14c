"""Drives otpd's operator page (/ui) in headless Chromium, by keyboard, as an operator
would: sign in with an admin key, see the providers, look a number up and read its
verification's timeline, lift a fraud block. Keeps a screenshot of each step.

    operator_page.py BASE_URL ADMIN_KEY OTHER_KEY NUMBER VERIFICATION_ID FRAUD_PREFIX SCREENSHOT_DIR

OTHER_KEY is the key of a tenant that is not an admin.

Exits non-zero, saying which step failed, if the page does not do what it should.
"""

import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path is given: Selenium fetches nothing.
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def main(base, key, other_key, number, verification_id, prefix, screenshots):
    os.makedirs(screenshots, exist_ok=True)
    driver = browser()
    wait = WebDriverWait(driver, 15)
    step = [0]

    def snap(name):
        step[0] += 1
        path = os.path.join(screenshots, f"{step[0]}-{name}.png")
        driver.save_screenshot(path)
        print(f"screenshot: {path}")

    def typed_into_focus(text):
        """Types into the element that has the focus, then Enter: the keyboard's way."""
        driver.switch_to.active_element.send_keys(text, Keys.ENTER)

    try:
        driver.get(base + "/ui")
        wait.until(shown.visibility_of_element_located((By.ID, "key")))
        assert driver.switch_to.active_element.get_attribute("id") == "key", \
            "the key field has the focus at load"
        snap("sign-in")

        # A key that is no key, then a tenant's that is not an admin's, are refused with a
        # message that says what to do.
        typed_into_focus("not-a-key")
        wait.until(shown.text_to_be_present_in_element((By.ID, "sign-in-error"), "admin = true"))
        typed_into_focus(other_key)
        wait.until(shown.text_to_be_present_in_element((By.ID, "sign-in-error"), "may not use the admin routes"))
        assert not driver.find_element(By.ID, "console").is_displayed()

        typed_into_focus(key)
        wait.until(shown.visibility_of_element_located((By.ID, "console")))
        assert key not in driver.current_url, "the key is never in a URL"
        stored = driver.execute_script("return sessionStorage.getItem('otpd.admin-key')")
        assert stored == key, "the key is kept in the tab's session storage"
        wait.until(lambda d: "sandbox" in d.find_element(By.ID, "providers").text)
        providers = driver.find_element(By.ID, "providers").text
        assert "closed" in providers, providers
        snap("providers")

        # After sign-in the focus is on the lookup field: type the number, then Enter.
        assert driver.switch_to.active_element.get_attribute("id") == "lookup"
        typed_into_focus(number)
        wait.until(shown.presence_of_element_located((By.CSS_SELECTOR, "#lookup-result .timeline")))
        result = driver.find_element(By.ID, "lookup-result").text
        assert verification_id in result, result
        assert "sandbox" in result and "sent" in result, result
        snap("lookup-by-number")

        lookup = driver.find_element(By.ID, "lookup")
        lookup.clear()
        lookup.send_keys(verification_id, Keys.ENTER)
        wait.until(lambda d: d.find_element(By.ID, "status").text == "Found 1 verification.")
        assert verification_id in driver.find_element(By.ID, "lookup-result").text
        snap("lookup-by-id")

        wait.until(lambda d: prefix in d.find_element(By.ID, "fraud-blocks").text)
        lift = driver.find_element(By.XPATH, f"//button[text()='Lift block on {prefix}']")
        snap("fraud-block")
        lift.send_keys(Keys.ENTER)
        wait.until(shown.text_to_be_present_in_element((By.ID, "status"), "Lifted the block"))
        wait.until(lambda d: prefix not in d.find_element(By.ID, "fraud-blocks").text)
        # By now the page has read /metrics twice: the live rates show numbers.
        wait.until(lambda d: d.find_element(By.ID, "rate-creates").text.replace(".", "").isdigit())
        snap("fraud-block-lifted")

        # The Content-Security-Policy let the page work without one violation.
        errors = [entry["message"] for entry in driver.get_log("browser")
                  if entry["level"] == "SEVERE" and "401" not in entry["message"]
                  and "403" not in entry["message"]]
        assert not errors, f"the browser reported errors: {errors}"
        print("operator page: sign-in, providers, lookup by number and by id, lift: ok")
    except Exception:
        snap("failed")
        raise
    finally:
        driver.quit()


if __name__ == "__main__":
    if len(sys.argv) != 8:
        sys.exit(__doc__)
    main(*sys.argv[1:])
