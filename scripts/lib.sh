# Sourced by the install scripts.

# sudo_prefix prints what to put before a command that needs root: nothing
# as root, "sudo -n" with sudo (never prompting: CI has no terminal); it
# fails when neither can run it.
sudo_prefix() {
  if [ "$(id -u)" -eq 0 ]; then
    echo ""
  elif command -v sudo >/dev/null 2>&1; then
    echo "sudo -n"
  else
    return 1
  fi
}
