"""check_trl_ipo_loss passes the solution and names the mistakes a student makes."""

import torch

from dpolib.course.exercises.trl import TRL_MISTAKE_CODES, check_trl_ipo_loss


def solution(pc, pr, rc, rr, nc, nr, beta):
    d = (pc - rc) / nc - (pr - rr) / nr
    return ((d - 1 / (2 * beta)) ** 2).mean()


def expect(result, mistake, phrase):
    assert not result and result.mistake == mistake, str(result)
    assert phrase.lower() in str(result).lower(), str(result)


def test_solution_passes():
    result = check_trl_ipo_loss(solution, quiet=True)
    assert result and result.mistake is None, str(result)


def test_agrees_with_trl_on_pizza_numbers():
    """TRL's own formula, written out as in trl 1.16's DPOTrainer."""
    pc, pr = torch.tensor([-0.5, -9.0]), torch.tensor([-9.0, -7.0])
    rc, rr = torch.tensor([-2.0, -2.0]), torch.tensor([-2.5, -1.5])
    nc, nr = torch.tensor([6.0, 6.0]), torch.tensor([5.0, 4.0])
    chosen_avg, rejected_avg = (pc - rc) / nc, (pr - rr) / nr
    trl = ((chosen_avg - rejected_avg - 1 / (2 * 0.5)) ** 2).mean()
    assert torch.allclose(solution(pc, pr, rc, rr, nc, nr, 0.5), trl)


def test_unnormalised_ipo_is_named():
    def dpolib_ipo(pc, pr, rc, rr, nc, nr, beta):
        return ((((pc - rc) - (pr - rr)) - 1 / (2 * beta)) ** 2).mean()

    expect(check_trl_ipo_loss(dpolib_ipo, quiet=True), "not_normalised", "token count")


def test_swapped_counts_are_named():
    def swapped(pc, pr, rc, rr, nc, nr, beta):
        return (((pc - rc) / nr - (pr - rr) / nc - 1 / (2 * beta)) ** 2).mean()

    expect(check_trl_ipo_loss(swapped, quiet=True), "swapped_counts", "swapped")


def test_per_pair_vector_and_detached_answers_fail():
    def vector(pc, pr, rc, rr, nc, nr, beta):
        return ((pc - rc) / nc - (pr - rr) / nr - 1 / (2 * beta)) ** 2

    assert not check_trl_ipo_loss(vector, quiet=True)

    def detached(*args):
        return solution(*args).detach()

    expect(check_trl_ipo_loss(detached, quiet=True), "no_grad", "gradient")


def test_codes_are_listed():
    assert {"not_normalised", "swapped_counts", "no_grad"} <= set(TRL_MISTAKE_CODES)
