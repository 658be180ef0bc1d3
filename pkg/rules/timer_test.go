package rules_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/rules"
)

// timed returns a rule on entityTypes that fires at the time at gives.
func timed(at, timerFor string, entityTypes ...string) configstore.Rule {
	return configstore.Rule{
		Name: "timed", On: configstore.RuleOn{EntityTypes: entityTypes, Operations: []string{"CREATE", "UPDATE"}},
		When: "true", At: at, TimerFor: timerFor,
	}
}

// envelope is the event of an entity as the judge hands it to rules.
func envelope(entityType, entityID, op string, at time.Time, deviceID string) map[string]any {
	ev := map[string]any{"entityType": entityType, "entityId": entityID, "operation": op, "occurredAt": at}
	if deviceID != "" {
		ev["deviceId"] = deviceID
	}
	return ev
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDayAtKeepsTheLocalTimeAcrossADSTChange(t *testing.T) {
	madrid, err := time.LoadLocation("Europe/Madrid")
	if err != nil {
		t.Fatal(err)
	}
	// Madrid goes from UTC+1 to UTC+2 on 29 March 2026 and back on 25
	// October 2026.
	tests := []struct {
		name      string
		delivered string
		days      int
		hhmm      string
		want      string
	}{
		{"23:30 Madrid time, two days before the change", "2026-03-27T22:30:00Z", 2, "09:00", "2026-03-29T07:00:00Z"},
		{"00:30 Madrid time, when it is still the day before in UTC", "2026-03-27T23:30:00Z", 2, "09:00", "2026-03-30T07:00:00Z"},
		{"the day after, before the change", "2026-03-27T12:00:00Z", 1, "09:00", "2026-03-28T08:00:00Z"},
		{"across the autumn change", "2026-10-24T10:00:00Z", 2, "09:00", "2026-10-26T08:00:00Z"},
		{"the same day, later", "2026-06-01T05:00:00Z", 0, "18:45", "2026-06-01T16:45:00Z"},
		{"midnight", "2026-06-01T05:00:00Z", 1, "00:00", "2026-06-01T22:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rules.DayAt(utc(tt.delivered), tt.days, tt.hhmm, madrid)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(utc(tt.want)) {
				t.Errorf("DayAt(%s, %d, %s) = %s, want %s", tt.delivered, tt.days, tt.hhmm, got.UTC().Format(time.RFC3339), tt.want)
			}
			if local := got.In(madrid).Format("15:04"); local != tt.hhmm {
				t.Errorf("local time %s, want %s", local, tt.hhmm)
			}
		})
	}
}

func TestDayAtInARuleUsesTheTenantsZone(t *testing.T) {
	r := compile(t, newEnv(t), timed(`dayAt(new.deliveredAt, 2, "09:00", tenant.timeZone)`, "", "Invoice"))
	delivered := utc("2026-03-27T23:30:00Z") // 00:30 on 28 March in Madrid
	invoice := map[string]any{"id": "inv-1", "status": "posted", "deliveredAt": delivered}
	tests := []struct {
		name   string
		tenant map[string]any
		want   string
	}{
		{"Europe/Madrid", map[string]any{"timeZone": "Europe/Madrid"}, "2026-03-30T07:00:00Z"},
		{"no zone set: UTC", map[string]any{"timeZone": ""}, "2026-03-29T09:00:00Z"},
		{"no tenant settings: UTC", nil, "2026-03-29T09:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &rules.Input{New: invoice, Tenant: tt.tenant, Event: envelope("Invoice", "inv-1", "UPDATE", delivered, "")}
			entity, due, err := r.Schedule("Invoice", in)
			if err != nil {
				t.Fatal(err)
			}
			if entity != "inv-1" || !due.Equal(utc(tt.want)) {
				t.Errorf("Schedule = %q, %s; want inv-1, %s", entity, due.Format(time.RFC3339), tt.want)
			}
		})
	}
}

func TestDayAtRefusesABadZoneOrTimeAndPassesNull(t *testing.T) {
	env := newEnv(t)
	ev := envelope("Invoice", "inv-1", "UPDATE", utc("2026-03-27T10:00:00Z"), "")
	delivered := map[string]any{"id": "inv-1", "deliveredAt": utc("2026-03-27T10:00:00Z")}
	for _, at := range []string{
		`dayAt(new.deliveredAt, 2, "09:00", "Europe/Nowhere")`,
		`dayAt(new.deliveredAt, 2, "24:00", "UTC")`,
		`dayAt(new.deliveredAt, 2, "9:00", "UTC")`,
	} {
		r := compile(t, env, timed(at, "", "Invoice"))
		if _, _, err := r.Schedule("Invoice", &rules.Input{New: delivered, Event: ev}); err == nil || !strings.Contains(err.Error(), "dayAt") {
			t.Errorf("%s: Schedule error = %v, want a dayAt error", at, err)
		}
	}
	r := compile(t, env, timed(`dayAt(new.deliveredAt, 2, "09:00", "UTC")`, "", "Invoice"))
	entity, due, err := r.Schedule("Invoice", &rules.Input{New: map[string]any{"id": "inv-1"}, Event: ev})
	if err != nil || entity != "inv-1" || !due.IsZero() {
		t.Errorf("an invoice not delivered: Schedule = %q, %s, %v; want inv-1, no due time", entity, due, err)
	}
}

func TestActivityAtOnSimAndBalance(t *testing.T) {
	const iccid = "8944474600000109251"
	r := compile(t, newEnv(t), timed(`activityAt(old, new, event) + duration("720h")`, "event.deviceId", "Sim", "Balance"))
	occurred := utc("2026-05-01T10:00:00Z")
	lastUse := utc("2026-04-30T08:00:00Z")
	sim := map[string]any{"id": "sim-1", "iccid": iccid, "status": "active"}
	withActivity := map[string]any{"id": "sim-1", "iccid": iccid, "status": "active", "lastActivityAt": lastUse}
	balance := map[string]any{"id": "bal-1", "accountId": "acc-1", "remaining": 10.0}
	tests := []struct {
		name       string
		entityType string
		new        map[string]any
		device     string
		wantEntity string
		wantDue    time.Time
	}{
		{"a Sim with its last activity", "Sim", withActivity, iccid, iccid, lastUse.Add(720 * time.Hour)},
		{"a Sim without lastActivityAt: the event", "Sim", sim, iccid, iccid, occurred.Add(720 * time.Hour)},
		{"usage of the SIM on a Balance", "Balance", balance, iccid, iccid, occurred.Add(720 * time.Hour)},
		{"a Balance event of no device touches no timer", "Balance", balance, "", "", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &rules.Input{New: tt.new, Event: envelope(tt.entityType, "x-1", "UPDATE", occurred, tt.device)}
			entity, due, err := r.Schedule(tt.entityType, in)
			if err != nil {
				t.Fatal(err)
			}
			if entity != tt.wantEntity || !due.Equal(tt.wantDue) {
				t.Errorf("Schedule = %q, %s; want %q, %s", entity, due, tt.wantEntity, tt.wantDue)
			}
		})
	}
	if reads := rules.Watch("Sim", r).Reads; reads.Whole || !slices.Contains(reads.Fields, "lastActivityAt") || !reads.Event {
		t.Errorf("Sim reads %+v, want lastActivityAt and the envelope, not the whole image", reads)
	}
	if reads := rules.Watch("Balance", r).Reads; reads.Whole || len(reads.Fields) != 0 || !reads.Event {
		t.Errorf("Balance reads %+v, want only the envelope", reads)
	}

	// Without timerFor, an event of no device is the entity's own and
	// cancels its timer.
	own := compile(t, newEnv(t), timed(`activityAt(old, new, event)`, "", "Balance"))
	entity, due, err := own.Schedule("Balance", &rules.Input{New: balance, Event: envelope("Balance", "bal-1", "UPDATE", occurred, "")})
	if err != nil || entity != "bal-1" || !due.IsZero() {
		t.Errorf("Schedule = %q, %s, %v; want bal-1 with no due time", entity, due, err)
	}
}

func TestScheduleGivesTheEntityAndItsDueTime(t *testing.T) {
	env := newEnv(t)
	r := compile(t, env, timed(`new.expiresAt - duration("72h")`, "", "Plan"))
	end := utc("2026-06-30T00:00:00Z")
	now := utc("2026-06-01T00:00:00Z")
	plan := map[string]any{"id": "pln-1", "status": "active", "expiresAt": end}
	entity, due, err := r.Schedule("Plan", &rules.Input{New: plan, Event: envelope("Plan", "pln-1", "UPDATE", now, "")})
	if err != nil || entity != "pln-1" || !due.Equal(end.Add(-72*time.Hour)) {
		t.Errorf("Schedule = %q, %s, %v; want pln-1 due %s", entity, due, err, end.Add(-72*time.Hour))
	}
	// A plan without an end date sets no timer: a null date minus a
	// duration is null, not an error.
	entity, due, err = r.Schedule("Plan", &rules.Input{New: map[string]any{"id": "pln-1"}, Event: envelope("Plan", "pln-1", "UPDATE", now, "")})
	if err != nil || entity != "pln-1" || !due.IsZero() {
		t.Errorf("no end date: Schedule = %q, %s, %v; want pln-1 with no due time", entity, due, err)
	}
	// A DELETE has no new image: the timer is cancelled.
	entity, due, err = r.Schedule("Plan", &rules.Input{Old: plan, Event: envelope("Plan", "pln-1", "DELETE", now, "")})
	if err != nil || entity != "pln-1" || !due.IsZero() {
		t.Errorf("DELETE: Schedule = %q, %s, %v; want pln-1 with no due time", entity, due, err)
	}
	// A rule without at has no timers.
	plain := compile(t, env, spec("true"))
	if plain.Timed() {
		t.Error("a rule without at is timed")
	}
	if entity, due, err := plain.Schedule("Balance", &rules.Input{Event: envelope("Balance", "b", "UPDATE", now, "")}); entity != "" || !due.IsZero() || err != nil {
		t.Errorf("a rule without at: Schedule = %q, %s, %v; want nothing", entity, due, err)
	}
	if !r.Timed() || r.Subject() != "Plan" {
		t.Errorf("Timed = %v, Subject = %q; want true, Plan", r.Timed(), r.Subject())
	}
}

func TestScheduleStopsAtTheCostLimit(t *testing.T) {
	r := compile(t, newEnv(t), timed(nestedAll(5)+` ? timestamp("2026-01-01T00:00:00Z") : null`, "", "Balance"))
	_, _, err := r.Schedule("Balance", &rules.Input{Event: envelope("Balance", "b", "UPDATE", time.Now(), "")})
	if !errors.Is(err, rules.ErrCostLimit) {
		t.Errorf("Schedule = %v, want ErrCostLimit", err)
	}
}

func TestTimerFiresOnTheLatestState(t *testing.T) {
	s := timed(`new.expiresAt - duration("72h")`, "", "Plan")
	s.When = `event.operation == "TIMER" && new.status == "active" && old == null`
	s.Notification.Fields = map[string]string{"dueAt": "event.occurredAt"}
	r := compile(t, newEnv(t), s)
	due := utc("2026-06-27T00:00:00Z")
	fire := func(status string) rules.Result {
		res, err := r.Evaluate("Plan", &rules.Input{
			New:   map[string]any{"id": "pln-1", "status": status},
			Event: envelope("Plan", "pln-1", "TIMER", due, ""),
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := fire("active"); !res.Fired || res.Fields["dueAt"] != "2026-06-27T00:00:00Z" {
		t.Errorf("active at the due time: %+v, want fired with dueAt 2026-06-27T00:00:00Z", res)
	}
	if res := fire("cancelled"); res.Fired {
		t.Error("a plan cancelled before its timer came due fired")
	}
}

func TestCompileChecksAtAndTimerFor(t *testing.T) {
	env := newEnv(t)
	tests := []struct {
		name      string
		spec      configstore.Rule
		wantField string
		wantText  string
	}{
		{"at is not a timestamp", timed(`new.status`, "", "Plan"), "at", "Timestamp"},
		{"at does not parse", timed(`new.expiresAt -`, "", "Plan"), "at", "1:"},
		{"at reads a field the entity lacks", timed(`new.endsAt`, "", "Plan"), "at", "endsAt"},
		{"timerFor is not a string", timed(`new.expiresAt`, "new.expiresAt", "Plan"), "timerFor", "string"},
		{"dayAt with a number for the time", timed(`dayAt(new.expiresAt, 1, 9, tenant.timeZone)`, "", "Plan"), "at", "dayAt"},
		{"tenant has no such setting", timed(`dayAt(new.expiresAt, 1, "09:00", tenant.zone)`, "", "Plan"), "at", "zone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.Compile("acme", "r-1", tt.spec, builtinEntities(t))
			var ce *rules.CompileError
			if !errors.As(err, &ce) || ce.Field != tt.wantField || !strings.Contains(ce.Message, tt.wantText) {
				t.Errorf("Compile error = %v, want a *CompileError on %s mentioning %q", err, tt.wantField, tt.wantText)
			}
		})
	}

	s := spec("true")
	s.TimerFor = "event.deviceId"
	_, err := env.Compile("acme", "r-1", s, builtinEntities(t))
	var se *rules.SpecError
	if !errors.As(err, &se) || se.Field != "timerFor" {
		t.Errorf("timerFor without at: Compile error = %v, want a *SpecError on timerFor", err)
	}

	for _, at := range []string{
		`new.expiresAt`,
		`new.autoRenew == true ? null : new.expiresAt - duration("72h")`,
		`dayAt(new.expiresAt, 1, "09:00", tenant.timeZone)`,
		`activityAt(old, new, event)`,
		`dayAt(timestamp("2026-01-01T00:00:00Z"), 1, "09:00", "UTC") + duration("1h")`,
	} {
		if _, err := env.Compile("acme", "r-1", timed(at, "", "Plan"), builtinEntities(t)); err != nil {
			t.Errorf("at %s: %v", at, err)
		}
	}
}

func TestTimedRuleReadsWhatAtAndTimerForRead(t *testing.T) {
	r := compile(t, newEnv(t), timed(`new.expiresAt - duration("72h")`, `new.upgradedTo`, "Plan"))
	reads := rules.Watch("Plan", r).Reads
	if !slices.Contains(reads.Fields, "expiresAt") || !slices.Contains(reads.Fields, "upgradedTo") || !reads.Event {
		t.Errorf("Reads = %+v, want expiresAt, upgradedTo and the envelope", reads)
	}
}

func TestTimedRuleIsMatchedOnDelete(t *testing.T) {
	ix := rules.NewIndex()
	env := newEnv(t)
	timedRule, err := env.Compile("acme", "timed", timed(`new.expiresAt`, "", "Plan"), builtinEntities(t))
	if err != nil {
		t.Fatal(err)
	}
	changeRule, err := env.Compile("acme", "change", configstore.Rule{
		On: configstore.RuleOn{EntityTypes: []string{"Plan"}, Operations: []string{"CREATE", "UPDATE"}}, When: "true",
	}, builtinEntities(t))
	if err != nil {
		t.Fatal(err)
	}
	ix.Put(timedRule)
	ix.Put(changeRule)
	if got := ix.Watching("acme", "Plan", "DELETE").Rules; len(got) != 1 || got[0].ID != "timed" {
		t.Errorf("Watching(DELETE) = %v, want the timed rule only", ids(got))
	}
	if timedRule.Watches("Plan", "DELETE") {
		t.Error("the timed rule's condition is judged on a DELETE it does not watch")
	}
	ix.Remove("acme", "timed")
	if got := ix.Watching("acme", "Plan", "DELETE").Rules; len(got) != 0 {
		t.Errorf("after Remove, Watching(DELETE) = %v, want none", ids(got))
	}
}

func ids(rs []rules.Bound) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func TestTimedRuleIsJudgedOnItsSubjectOnly(t *testing.T) {
	s := timed(`activityAt(old, new, event) + duration("720h")`, "event.deviceId", "Sim", "Balance")
	s.When = `new.status == "active"` // Balance has no status: checked on the Sim only
	r := compile(t, newEnv(t), s)
	timer := envelope("Sim", "8944474600000109251", "TIMER", utc("2026-05-31T10:00:00Z"), "")
	res, err := r.Evaluate("Sim", &rules.Input{New: map[string]any{"id": "sim-1", "status": "active"}, Event: timer})
	if err != nil || !res.Fired {
		t.Errorf("Evaluate(Sim) = %+v, %v; want fired", res, err)
	}
	res, err = r.Evaluate("Balance", &rules.Input{New: map[string]any{"id": "bal-1"}, Event: timer})
	if err != nil || res.Fired {
		t.Errorf("Evaluate(Balance) = %+v, %v; want not fired", res, err)
	}
	if reads := rules.Watch("Balance", r).Reads; slices.Contains(reads.Fields, "status") {
		t.Errorf("Balance reads %+v, want none of the condition's fields", reads)
	}
}
