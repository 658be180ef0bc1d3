package catalog

// truphone returns Truphone Connect's two SIM notifications, named as
// Truphone's type field names them. Truphone's payload identifies the SIM
// by ICCID (the event's deviceId) and its subscription (the plan).
func truphone() []*Entry {
	return []*Entry{
		{
			Name: "USAGE_THRESHOLD", Title: "Usage Threshold", Vendor: Truphone, Trigger: Change,
			Description: "A subscription's usage reaches a percentage of its allowance (used against total of an allowance Balance); " +
				"80% by default. It notifies once per crossing, and again only after usage has gone back below. " +
				"subscription_id is the plan that granted the allowance (planId).",
			On:           On{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "USAGE_THRESHOLD", State: "reached", Fields: []string{"iccid", "subscription_id"}},
			Parameters: []Parameter{
				{Name: "thresholdPercent", Type: Number, Default: 80.0, ExclusiveMinimum: ptr(0), Maximum: ptr(100),
					Description: "Usage, as a percent of the allowance's total, at which the notification fires."},
			},
			Exclusions: []string{"monetary balances, and balances whose kind is not given", "usage already at or past the percentage"},
			build: func(v Values) parts {
				p := percentCrosses("crossedAbove", "used", v.Number("thresholdPercent"))
				p.fields = map[string]string{"iccid": "event.deviceId", "subscription_id": "new.planId"}
				return p
			},
		},
		{
			Name: "SUBSCRIPTION_END", Title: "Subscription End", Vendor: Truphone, Trigger: Change,
			Description: "A subscription (a Plan) ends: its allowances are used up (status depleted) or it passed its expiry date (status expired). " +
				"It ends once: a depleted plan that then expires does not end again.",
			On:           On{EntityTypes: []string{"Plan"}, Operations: []string{"UPDATE"}},
			Notification: Notification{Name: "SUBSCRIPTION_END", State: "ended", Fields: []string{"iccid", "subscription_id"}},
			Exclusions:   []string{"a plan that had already ended (depleted, then expired)", "a plan cancelled"},
			build: func(Values) parts {
				ended := `["depleted", "expired"]`
				return parts{
					when:   `!(old.status in ` + ended + `) && new.status in ` + ended,
					fields: map[string]string{"iccid": "event.deviceId", "subscription_id": "new.id"},
				}
			},
		},
	}
}
