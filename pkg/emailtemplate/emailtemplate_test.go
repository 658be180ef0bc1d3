package emailtemplate_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/emailtemplate"
	"github.com/heraldhq/herald/pkg/notification"
)

func TestCompileChecksTokensWhenSaved(t *testing.T) {
	tests := []struct {
		name      string
		tmpl      configstore.EmailTemplate
		wantField string
		wantErr   string // part of the message; "" for none
	}{
		{name: "tokens a notification has",
			tmpl: configstore.EmailTemplate{Subject: "{{.Notification.Name}}: {{.Notification.State}} (was {{.Notification.PrevState}})",
				TextBody: "Account {{.Notification.Event.AccountID}} at {{.Notification.Threshold}}% on {{.Notification.CreatedAt.Format \"2006-01-02\"}}",
				HTMLBody: "<p>{{.Notification.Fields.planid}} {{.Notification.New.remaining}} {{with .Notification.Old}}{{.remaining}}{{end}}</p>"}},
		{name: "unknown field, with its position", tmpl: configstore.EmailTemplate{Subject: "Now {{.Notification.Stat}}", TextBody: "x"},
			wantField: "subject", wantErr: `subject:1:19: executing "subject" at <.Notification.Stat>: can't evaluate field Stat`},
		{name: "unknown root", tmpl: configstore.EmailTemplate{Subject: "s", TextBody: "line\n{{.Account.Name}}"},
			wantField: "textBody", wantErr: "textBody:2:10"},
		{name: "unknown event field in HTML", tmpl: configstore.EmailTemplate{Subject: "s", HTMLBody: "<b>{{.Notification.Event.Iccid}}</b>"},
			wantField: "htmlBody", wantErr: "can't evaluate field Iccid"},
		{name: "syntax", tmpl: configstore.EmailTemplate{Subject: "{{.Notification.Name", TextBody: "x"},
			wantField: "subject", wantErr: "subject:1: unclosed action"},
		{name: "line break in the subject", tmpl: configstore.EmailTemplate{Subject: "Hello\r\nBcc: all@example.com", TextBody: "x"},
			wantField: "subject", wantErr: "line break"},
		{name: "no subject", tmpl: configstore.EmailTemplate{TextBody: "x"}, wantField: "subject", wantErr: "required"},
		{name: "no body", tmpl: configstore.EmailTemplate{Subject: "s"}, wantField: "textBody", wantErr: "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := emailtemplate.Compile(tt.tmpl)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Compile: %v", err)
				}
				return
			}
			var te *emailtemplate.Error
			if !errors.As(err, &te) || te.Field != tt.wantField || !strings.Contains(te.Err.Error(), tt.wantErr) {
				t.Fatalf("Compile error %v, want %s: …%s…", err, tt.wantField, tt.wantErr)
			}
		})
	}
}

func TestRenderEscapesHTMLAndRefusesHeaderInjection(t *testing.T) {
	tmpl, err := emailtemplate.Compile(configstore.EmailTemplate{
		Subject:  "Plan {{.Notification.Fields.planid}} is {{.Notification.State}}",
		TextBody: "Plan {{.Notification.Fields.planid}}, left {{.Notification.Fields.left}}",
		HTMLBody: "<p>Plan {{.Notification.Fields.planid}}</p>",
	})
	if err != nil {
		t.Fatal(err)
	}
	n := notification.Sample()
	n.State = "expired"
	n.Fields = map[string]string{"planid": `"<script>x</script>"`}
	m, err := tmpl.Render(n)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Plan <script>x</script> is expired" {
		t.Errorf("subject %q", m.Subject)
	}
	if m.Text != "Plan <script>x</script>, left " {
		t.Errorf("a field the notification lacks should render empty: text %q", m.Text)
	}
	if strings.Contains(m.HTML, "<script>") || !strings.Contains(m.HTML, "&lt;script&gt;") {
		t.Errorf("HTML not escaped: %q", m.HTML)
	}

	n.Fields = map[string]string{"planid": `"p1\r\nBcc: everyone@example.com"`}
	if _, err := tmpl.Render(n); !errors.Is(err, emailtemplate.ErrHeaderInjection) {
		t.Errorf("a token with a line break in the subject: %v, want ErrHeaderInjection", err)
	}
}
