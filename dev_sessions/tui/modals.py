"""The TUI's small questions to the user: confirm a kill, type a prompt, answer a dialog, write a message.

Each is a modal screen that returns what was chosen (None: cancelled) and does nothing itself; the
app makes the library call.
"""

from __future__ import annotations

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option as ListOption

from dev_sessions.backend import Dialog
from dev_sessions.terminal import cell, for_terminal


class Confirm(ModalScreen[bool]):
    """A yes/no question; No is where the focus starts."""

    BINDINGS = [  # noqa: RUF012 - Textual's own class attribute
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Static(Text(self.question), classes="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("Cancel (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class Prompt(ModalScreen[str | None]):
    """One line of text (a prompt for a session); Enter sends, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]  # noqa: RUF012

    def __init__(self, title: str, placeholder: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Label(Text(self.title_text), classes="question")
            yield Input(placeholder=self.placeholder, id="text")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Answer(ModalScreen[str | None]):
    """A session's dialog: its question and options to pick (Enter, or the option's number), and a
    line of free text where the dialog takes one. Returns the answer as ``respond`` takes it."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]  # noqa: RUF012

    def __init__(self, session_id: str, dialog: Dialog) -> None:
        super().__init__()
        self.session_id = session_id
        self.dialog = dialog

    def compose(self) -> ComposeResult:
        question = Text()
        question.append(f"{self.session_id} asks: ", style="dim")
        question.append(for_terminal(self.dialog.question), style="bold")
        for line in self.dialog.context:
            question.append("\n" + for_terminal(line), style="dim")
        with Vertical(classes="modal"):
            yield Static(question, classes="question")
            options = []
            for option in self.dialog.options:
                label = Text(f"{option.number}. ", style="bold")
                label.append(cell(option.label))
                if option.description:
                    label.append(f" - {cell(option.description)}", style="dim")
                options.append(ListOption(label, id=str(option.number)))
            yield OptionList(*options, id="options")
            if self.dialog.text_option is not None:
                yield Input(placeholder="or type an answer, Enter to send", id="free")
            yield Label(Text("Enter or a number picks · Esc cancels", style="dim"))

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        selected = self.dialog.selected
        numbers = [o.number for o in self.dialog.options]
        if selected in numbers:
            self.query_one(OptionList).highlighted = numbers.index(selected)

    def on_key(self, event: events.Key) -> None:
        key = event.character
        picks = key and key.isdigit() and any(str(o.number) == key for o in self.dialog.options)
        if picks and self.query_one(OptionList).has_focus:
            event.stop()
            self.dismiss(key)

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    @on(Input.Submitted, "#free")
    def typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Compose(ModalScreen[tuple[str, str] | None]):
    """A message: to whom (a session, an agent, a space, filled in for a reply) and its text."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]  # noqa: RUF012

    def __init__(self, title: str, to: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.to = to

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Label(Text(self.title_text), classes="question")
            yield Input(value=self.to, placeholder="to: a session, an agent or a space", id="to")
            yield Input(placeholder="the message, Enter sends", id="body")

    def on_mount(self) -> None:
        self.query_one("#body" if self.to else "#to", Input).focus()

    @on(Input.Submitted, "#to")
    def next_field(self) -> None:
        self.query_one("#body", Input).focus()

    @on(Input.Submitted, "#body")
    def submitted(self, event: Input.Submitted) -> None:
        to = self.query_one("#to", Input).value.strip()
        if not to:
            self.query_one("#to", Input).focus()
        elif event.value.strip():
            self.dismiss((to, event.value))

    def action_cancel(self) -> None:
        self.dismiss(None)
