; Inno Setup script for vizapp on Windows: a per-machine install of the PyInstaller folder
; (dist\vizapp, built by `python packaging\build.py` on Windows), a Start-menu entry, and a
; silent mode for lab machines:  vizapp-setup.exe /VERYSILENT /SUPPRESSMSGBOXES /NORESTART
; Built by .github/workflows/installers.yml:  iscc /DAppVersion=0.1.0 packaging\windows\vizapp.iss
; (not built or tested on the Linux machines this project is developed on).

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif

[Setup]
AppId={{5E0B1B8A-6F0C-4C55-9E1E-7A11F2D1B0A1}
AppName=vizapp
AppVersion={#AppVersion}
AppPublisher=vizapp developers
DefaultDirName={autopf}\vizapp
DefaultGroupName=vizapp
PrivilegesRequired=admin
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=vizapp-{#AppVersion}-setup
Compression=lzma2/fast
SolidCompression=no
DisableProgramGroupPage=yes
UninstallDisplayIcon={app}\vizapp-gui.exe

[Files]
Source: "..\..\dist\vizapp\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\vizapp"; Filename: "{app}\vizapp-gui.exe"; Comment: "See inside vision networks"
Name: "{autodesktop}\vizapp"; Filename: "{app}\vizapp-gui.exe"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop icon"; Flags: unchecked

[Run]
Filename: "{app}\vizapp.exe"; Parameters: "doctor"; Description: "Check this machine (vizapp doctor)"; Flags: postinstall skipifsilent runhidden nowait
