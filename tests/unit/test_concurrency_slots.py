"""The slot book of a flow's ``concurrency`` (pure): who runs, who waits, who is handed a slot."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from control_plane.flows.models import Concurrency
from control_plane.service.concurrency import Admission, SlotBook

QUEUE = Concurrency(limit=2)


def test_the_default_behavior_is_queue_as_in_kestra() -> None:
    assert Concurrency(limit=1).behavior == "QUEUE"  # Concurrency.java: @Builder.Default QUEUE


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_is_refused(limit: int) -> None:
    with pytest.raises(ValidationError):
        Concurrency(limit=limit)  # Concurrency.java: @Positive


def test_up_to_the_limit_run_then_the_rest_queue_in_order() -> None:
    book = SlotBook()
    answers = []
    for name in "abcd":
        book, answer = book.admit(name, QUEUE)
        answers.append(answer)
    assert answers == [Admission.RUN, Admission.RUN, Admission.QUEUE, Admission.QUEUE]
    assert book == SlotBook(("a", "b"), ("c", "d"))


def test_asking_again_gives_the_same_answer_and_changes_nothing() -> None:
    book = SlotBook(("a", "b"), ("c",))
    assert book.admit("a", QUEUE) == (book, Admission.RUN)
    assert book.admit("c", QUEUE) == (book, Admission.QUEUE)


@pytest.mark.parametrize("behavior", ["CANCEL", "FAIL"])
def test_cancel_and_fail_refuse_over_the_limit_and_keep_no_place(behavior: str) -> None:
    book = SlotBook(("a",))
    after, answer = book.admit("b", Concurrency(limit=1, behavior=behavior))
    assert answer is Admission(behavior) and after == book


def test_an_ending_execution_hands_its_slot_to_the_oldest_queued_one_once() -> None:
    book = SlotBook(("a", "b"), ("c", "d"))
    after, promoted = book.release("a", 2)
    assert promoted == ("c",) and after == SlotBook(("b", "c"), ("d",))
    assert after.release("a", 2) == (after, ())  # released twice: nothing more


def test_a_raised_limit_hands_out_every_free_slot_and_a_lowered_one_none() -> None:
    book = SlotBook(("a", "b"), ("c", "d", "e"))
    assert book.release("a", 4) == (SlotBook(("b", "c", "d", "e"), ()), ("c", "d", "e"))
    assert book.release("a", 1) == (SlotBook(("b",), ("c", "d", "e")), ())


def test_a_queued_execution_that_ends_leaves_the_queue_without_freeing_a_slot() -> None:
    book = SlotBook(("a",), ("b", "c"))
    assert book.release("b", 1) == (SlotBook(("a",), ("c",)), ())
