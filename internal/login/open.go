package login

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
)

// OpenBrowser starts the person's browser on url: $BROWSER when set, else
// open (macOS), rundll32 (Windows) or xdg-open. It fails when there is no
// graphical session to show a browser in (a headless Linux box, an SSH
// session) or no program to start; it does not wait for the browser.
func OpenBrowser(url string) error {
	var cmd *exec.Cmd
	switch b := os.Getenv("BROWSER"); {
	case b != "":
		cmd = exec.Command(b, url)
	case runtime.GOOS == "darwin":
		cmd = exec.Command("open", url)
	case runtime.GOOS == "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return errors.New("no graphical session (DISPLAY and WAYLAND_DISPLAY are unset)")
		}
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}
