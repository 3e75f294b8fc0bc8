package testkit

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Browser starts a headless Chromium with its own profile for the test and
// returns the context of its tab, for [Browse]. The browser stops when the
// test ends. Browser fails the test when no Chromium is installed.
func Browser(tb testing.TB) context.Context {
	tb.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		tb.Fatal("no Chromium found: run scripts/install-chromium.sh (make test does)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(tb.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	tb.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		tb.Fatalf("starting Chromium: %v", err)
	}
	return ctx
}

// Page is what the browser shows: its URL, its title and the text of its
// body.
type Page struct {
	URL, Title, Text string
}

// String returns the page's URL, title and text, for messages.
func (p Page) String() string { return fmt.Sprintf("%s (%q): %s", p.URL, p.Title, p.Text) }

// Browse runs steps in the tab of ctx (from [Browser]) and returns the page
// the browser then shows. It fails the test, showing that page, when a step
// fails or the steps take more than 30 seconds.
func Browse(tb testing.TB, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) Page {
	tb.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := chromedp.Do(sctx, steps...)
	var p Page
	p.URL, _ = chromedp.Run(ctx, chromedp.Location())
	p.Title, _ = chromedp.Run(ctx, chromedp.Title())
	p.Text, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		tb.Fatalf("browser: %v; it shows %s", err, p)
	}
	return p
}

// SignIn waits for a login form with the fields #username and #password,
// fills them in (emptying them first) and clicks the form's submit button.
// Clickgate's development IdP and zitadel's example login page both have
// such a form.
func SignIn(user, password string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(chromedp.CSS("#username")),
		ClearField("#username"),
		chromedp.SendKeys(chromedp.CSS("#username"), user),
		ClearField("#password"),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("button[type=submit]")),
	)
}

// ClearField empties the input field sel (a page may fill in the user name
// again after a failed sign-in).
func ClearField(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](fmt.Sprintf(`(document.querySelector(%q).value = "", true)`, sel))(ctx, t)
		return err
	})
}

// WaitText waits until the element sel shows text. It evaluates again
// after errors, which come while the page navigates (a form's submission,
// a redirect).
func WaitText(sel, text string) chromedp.Action[chromedp.Void] {
	expr := fmt.Sprintf(`document.querySelector(%q) !== null && document.querySelector(%q).innerText.includes(%q)`, sel, sel, text)
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for {
			if ok, err := chromedp.Evaluate[bool](expr)(ctx, t); err == nil && ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s to show %q: %w", sel, text, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}
