package catalog_test

import "testing"

func TestM3terEventsFireAsM3terSays(t *testing.T) {
	loadBuiltin(t).run(t, m3terCases())
}

func m3terCases() []entryCases {
	const acct = "df41d216-XXXX-470f-YYYY-79b16059a96f"
	// m3ter's own example: notify once when the amount spent crosses the
	// mark, including on the commitment's creation.
	const spent = `(new.amountSpent >= ((new.amount*100)/90)) AND ((old.amountSpent <= ((old.amount*100)/90)) OR (old.amountSpent == null))`
	commitment := func(amount float64, spent any) map[string]any {
		return map[string]any{"id": "cmt-1", "accountId": acct, "currency": "USD", "amount": amount, "amountSpent": spent}
	}
	// bare holds only what the Commitment schema requires.
	bare := map[string]any{"id": "cmt-2", "accountId": acct, "amount": 100.0}
	account := map[string]any{"id": "acc-1", "status": "active"}
	const falseCalculation = "an event on which the calculation is false"

	return []entryCases{
		{entry: "EntityCreated", params: map[string]any{"entityType": "Commitment"}, cases: []sample{
			{name: "a commitment is created", op: "CREATE", new: commitment(5000, nil), fire: true},
			{name: "a commitment with only its required fields is created", op: "CREATE", new: bare, sparse: true, fire: true},
			{name: "a commitment is updated", op: "UPDATE", old: commitment(5000, nil), new: commitment(5000, 10.0), unwatched: true, whenHolds: true},
			{name: "a commitment is deleted", op: "DELETE", old: commitment(5000, nil), unwatched: true, whenHolds: true},
		}},
		{entry: "EntityCreated", params: map[string]any{"entityType": "Commitment", "calculation": "new.amount >= 5000"}, cases: []sample{
			{name: "a commitment of 5000", op: "CREATE", new: commitment(5000, nil), edge: true, fire: true},
			{name: "a commitment of 4999.99", op: "CREATE", new: commitment(4999.99, nil), excludes: falseCalculation},
		}},
		{entry: "EntityUpdated", params: map[string]any{"entityType": "Commitment", "calculation": spent}, cases: []sample{
			{name: "spend crosses the mark", op: "UPDATE", old: commitment(90, 95.0), new: commitment(90, 101.0), fire: true},
			{name: "spend was unset and is past the mark", op: "UPDATE", old: commitment(90, nil), new: commitment(90, 101.0), fire: true},
			{name: "spend was already past the mark", op: "UPDATE", old: commitment(90, 101.0), new: commitment(90, 105.0), excludes: falseCalculation},
			{name: "spend below the mark", op: "UPDATE", old: commitment(90, 10.0), new: commitment(90, 20.0)},
			{name: "created past the mark: an update rule does not watch it", op: "CREATE", new: commitment(90, 101.0), unwatched: true, whenHolds: true},
		}},
		{entry: "EntityUpdated", params: map[string]any{"entityType": "Commitment", "calculation": `new.accountId == "` + acct + `"`}, cases: []sample{
			{name: "the account's commitment changes", op: "UPDATE", old: commitment(90, 1.0), new: commitment(90, 2.0), fire: true},
			{name: "a commitment with only its required fields changes", op: "UPDATE", old: bare, new: with(bare, "amount", 90.0), sparse: true, fire: true},
			{name: "another account's commitment changes", op: "UPDATE", old: with(commitment(90, 1.0), "accountId", "other"), new: with(commitment(90, 2.0), "accountId", "other")},
		}},
		{entry: "EntityDeleted", params: map[string]any{"entityType": "Account"}, cases: []sample{
			{name: "an account is deleted", op: "DELETE", old: account, sparse: true, fire: true},
			{name: "an account is updated", op: "UPDATE", old: account, new: with(account, "status", "closed"), unwatched: true, whenHolds: true},
		}},
		{entry: "EntityDeleted", params: map[string]any{"entityType": "Account", "calculation": `isnull(old.balance) OR old.balance == 0`}, cases: []sample{
			{name: "an account without a balance is deleted", op: "DELETE", old: account, fire: true},
			{name: "an account with money left is deleted", op: "DELETE", old: with(account, "balance", 12.0), excludes: falseCalculation},
		}},
	}
}
