//! Owning the terminal: raw mode and the alternate screen for as long as the
//! guard lives, given back on drop and from a panic hook, so the user's
//! shell is usable again however the TUI ends.

use std::io::{self, Stdout, Write};
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::cursor::Show;
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use signal_hook::SigId;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Set while the terminal is in TUI mode; the panic hook restores only then.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// A panic (on any thread) restored the terminal under the running TUI: the
/// event loop must stop drawing.
static PANICKED: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// Leaves raw mode and the alternate screen; does nothing when not active,
/// so the guard and the panic hook can both call it. True if it restored.
fn restore() -> bool {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return false;
    }
    let _ = disable_raw_mode();
    let mut out = io::stdout();
    let _ = execute!(out, LeaveAlternateScreen, Show);
    let _ = out.flush();
    true
}

/// True once a panic has taken the terminal back from this TUI session.
pub fn panicked() -> bool {
    PANICKED.load(Ordering::SeqCst)
}

pub struct TerminalGuard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
    /// Where key presses come from: stdin when it is a terminal, else
    /// /dev/tty (as crossterm chooses).
    input: Input,
}

enum Input {
    Stdin,
    Tty(std::fs::File),
}

impl TerminalGuard {
    /// Waits up to `timeout` for input on the terminal; true if the
    /// terminal hung up (its window closed, its tmux server killed). Asked
    /// before crossterm is: on a terminal that hung up, crossterm's poll
    /// and read spin on the failing reads without returning (found when a
    /// killed tmux left `replay --tui` at 100% CPU), so the loop would
    /// never see its stop flag.
    pub fn hung_up_while_waiting(&self, timeout: std::time::Duration) -> bool {
        use std::os::fd::AsRawFd;
        let fd = match &self.input {
            Input::Stdin => libc::STDIN_FILENO,
            Input::Tty(f) => f.as_raw_fd(),
        };
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        // n < 0 is EINTR: a signal, which the loop's flags will show.
        n > 0 && p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
    }

    pub fn enter() -> io::Result<TerminalGuard> {
        HOOK.call_once(|| {
            let prev = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // Restore first, or the panic message lands on the alternate
                // screen and vanishes with it. A panic on another thread (the
                // source) also stops the TUI, which would otherwise go on
                // drawing over the restored screen.
                if restore() {
                    PANICKED.store(true, Ordering::SeqCst);
                }
                prev(info);
            }));
        });
        enable_raw_mode()?;
        PANICKED.store(false, Ordering::SeqCst);
        ACTIVE.store(true, Ordering::SeqCst);
        let mut out = io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen) {
            let _ = restore();
            return Err(e);
        }
        let input = if io::IsTerminal::is_terminal(&io::stdin()) {
            Input::Stdin
        } else {
            match std::fs::File::open("/dev/tty") {
                Ok(f) => Input::Tty(f),
                Err(e) => {
                    let _ = restore();
                    return Err(e);
                }
            }
        };
        match Terminal::new(CrosstermBackend::new(out)) {
            Ok(mut terminal) => {
                let _ = terminal.hide_cursor();
                let _ = terminal.clear();
                Ok(TerminalGuard { terminal, input })
            }
            Err(e) => {
                let _ = restore();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = restore();
    }
}

/// SIGINT, SIGTERM and SIGHUP turn into a flag the event loop checks, so
/// they end the TUI through the same path as `q` (terminal restored). A
/// second one while the first is pending exits at once, for a stuck UI.
pub struct StopSignals {
    pub flag: Arc<AtomicBool>,
    setters: Vec<SigId>,
}

impl StopSignals {
    pub fn register() -> io::Result<StopSignals> {
        let flag = Arc::new(AtomicBool::new(false));
        let mut setters = Vec::new();
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            // Registered before the flag setter, so it sees the flag as it
            // was before this signal: set only by an earlier one.
            signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())?;
            setters.push(signal_hook::flag::register(sig, flag.clone())?);
        }
        Ok(StopSignals { flag, setters })
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        // signal-hook never reinstates the default action, so removing
        // everything would leave the caller's process deaf to Ctrl-C and
        // kill. Instead the flag setters go and the flag is raised: from now
        // on these signals end the process (exit status 130), as by default.
        for id in self.setters.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        self.flag.store(true, Ordering::SeqCst);
    }
}
