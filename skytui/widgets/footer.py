"""QuietFooter: Textual's Footer, rebuilt only as far as the keys it shows change.

Textual's Footer recomposes (unmounts, then mounts and styles a FooterKey per
binding) on every focus change and every screen switch, whether or not the
keys it shows changed: 15-20 ms, and several times that on a busy machine,
right after the frames of the keys that move focus (`/`, `escape`, `enter`),
where it delays the next key. Each rebuild also leaves work for later:
Textual keeps removed keys bound to the footer (`_forget_removed_keys`) and
their render caches in an `lru_cache`, which every full GC collection walks.

This subclass skips the rebuild when the keys are the same; otherwise it
hides the keys no longer wanted and shows them again when they are (opening
the filter hides ten keys, closing it brings them back), and mounts only the
keys it has never shown.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.compose import compose
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

# Not re-exported by textual.widgets; the widget Footer.compose yields per key.
from textual.widgets._footer import FooterKey

__all__ = ["QuietFooter"]

KeySpec = tuple[object, ...]


def _spec(key: FooterKey) -> KeySpec:
    """Everything a FooterKey shows and does, as given to its constructor."""
    return (key.key, key.key_display, key.description, key.action, key.tooltip,
            key.has_class("-disabled"), key.has_class("-command-palette"))


class QuietFooter(Footer):
    """A Footer that shows and hides its keys rather than rebuilding them."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._composed: object | None = None
        """What the keys shown were composed from; None before the first keys."""

    def _shown_bindings(self, screen: Screen[object]) -> object:
        """Everything Footer.compose reads from the bindings, as a comparable value."""
        active = screen.active_bindings
        shown = tuple(
            (binding.key, binding.key_display, binding.action, binding.description, binding.group,
             enabled, tooltip)
            for _node, binding, enabled, tooltip in active.values()
            if binding.show
        )
        palette = active.get(self.app.COMMAND_PALETTE_BINDING)
        palette_key = None if palette is None else (palette.binding.key, palette.enabled)
        return shown, palette_key, self.show_command_palette

    def compose(self) -> ComposeResult:
        self._composed = self._shown_bindings(self.screen) if self._bindings_ready else None
        yield from super().compose()

    def bindings_changed(self, screen: Screen[object]) -> None:
        # Footer.bindings_changed, but the rebuild it schedules checks first.
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen:
            self.call_after_refresh(self._rebuild_if_changed)

    async def _rebuild_if_changed(self) -> None:
        """Bring the keys up to date, if they are not. Checked when the rebuild
        is due, not when it was asked for: a focus move signals twice (blur,
        then focus), and only the state after both matters."""
        if not self.is_attached or (
            self._composed is not None and self._shown_bindings(self.screen) == self._composed
        ):
            return
        current = list(self.children)
        wanted = compose(self)  # new, unmounted keys: only those not shown before get mounted
        flat = all(isinstance(widget, FooterKey) for widget in (*current, *wanted))
        if flat and await self._show_keys(current, wanted):  # type: ignore[arg-type]
            return
        # Grouped bindings nest keys in KeyGroups, or the order changed: rebuild the lot.
        async with self.batch():
            await self.remove_children()
            await self.mount_all(wanted)
        self._forget_removed_keys()

    async def _show_keys(self, current: Sequence[FooterKey], wanted: Sequence[FooterKey]) -> bool:
        """Show the wanted keys in order, reusing the current ones (shown or
        hidden) with the same binding and state, and hide the rest. False,
        with nothing changed, if reused keys would have to change order."""
        unused: dict[KeySpec, list[FooterKey]] = {}
        for key in current:
            unused.setdefault(_spec(key), []).append(key)
        chosen: list[FooterKey] = []
        for key in wanted:
            same = unused.get(_spec(key))
            chosen.append(same.pop(0) if same else key)
        reused = set(current).intersection(chosen)
        if [key for key in chosen if key in reused] != [key for key in current if key in reused]:
            return False
        async with self.batch():
            for key in current:
                key.display = key in reused
            # Mount each run of new keys before the next reused key (or at the end).
            run: list[Widget] = []
            for key in chosen:
                if key not in reused:
                    run.append(key)
                elif run:
                    await self.mount_all(run, before=key)
                    run = []
            if run:
                await self.mount_all(run)
        return True

    def _forget_removed_keys(self) -> None:
        """Footer.compose binds each key's `compact` to the footer's, and
        Textual drops the bindings of removed keys only when `compact` next
        changes: never, so each rebuild leaked its old keys (whole widgets,
        which every full GC collection then walks, slower and slower).
        Re-sending the unchanged value makes Textual drop them."""
        self.mutate_reactive(Footer.compact)
